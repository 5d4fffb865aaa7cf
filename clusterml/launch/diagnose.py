"""Why a cluster did not start, in words: Slurm state, engine log tail, cause, fix.

Pure of ipyparallel's machinery: takes a launcher's facts (job id, output
file, profile folder) and Slurm's answer, returns ``stop_data`` for
ipyparallel's ``notify_stop`` and the text of :class:`clusterml.ClusterStartError`::

    Slurm job 812 FAILED
    engine log (last lines):
      ...
    cause: controller address 10.0.0.1:53123 is not reachable from node1
    fix: clusterml profile set clusterml-slurm controller_ip=<an address node1 reaches>
"""

from __future__ import annotations

import json
import os
import re

from .slurmctl import ENDED_STATES, SlurmError, run

__all__ = ["HOPELESS_REASONS", "LOOPBACK_MPI_ENV", "job_over", "job_line", "stop_data",
           "start_error_text"]

#: Pending reasons that never clear by waiting (or not within any sane start timeout).
HOPELESS_REASONS = frozenset({
    "BadConstraints", "PartitionNodeLimit", "PartitionTimeLimit", "PartitionConfig",
    "InvalidAccount", "InvalidQOS", "DependencyNeverSatisfied", "QOSMaxWallDurationPerJobLimit",
    "ReqNodeNotAvail", "AssocMaxJobsLimit", "QOSMaxCpuPerUserLimit", "AssocGrpCpuLimit",
    "QOSMaxNodePerJobLimit", "PartitionDown", "PartitionInactive", "NodeDown",
})

#: Engine environment of a loopback-only local cluster: MPI's transports stay on ``lo``.
LOOPBACK_MPI_ENV = {"UCX_NET_DEVICES": "lo", "FI_TCP_IFACE": "lo", "FI_SOCKETS_IFACE": "lo",
                    "OMPI_MCA_btl_tcp_if_include": "lo", "OMPI_MCA_oob_tcp_if_include": "lo"}


def _reason(info) -> str:
    r = (info.reason or "").split(",")[0].strip()
    return "" if r in ("None", "(null)") else r


def job_over(info, hopeless=HOPELESS_REASONS) -> bool:
    """True when the job ended, or pends for a reason that never clears."""
    state = info.state.split()[0]
    return state in ENDED_STATES or (state == "PENDING" and _reason(info) in set(hopeless))


def job_line(info, job_id: str = "") -> str:
    """``Slurm job 812 PENDING (Resources)`` (``GONE`` when Slurm forgot it)."""
    if info is None:
        return f"Slurm job {job_id} GONE (no longer known to Slurm)"
    reason = _reason(info)
    return f"Slurm job {info.job_id} {info.state}" + (f" ({reason})" if reason else "")


def _tail(path: str, limit: int = 15) -> list[str]:
    try:
        with open(path, errors="replace") as fh:
            return fh.read().splitlines()[-limit:]
    except OSError:
        return []


def _controller_address(profile_dir: str, cluster_id: str) -> str:
    name = f"ipcontroller-{cluster_id}-engine.json" if cluster_id else "ipcontroller-engine.json"
    try:
        with open(os.path.join(profile_dir, "security", name)) as fh:
            info = json.load(fh)
    except (OSError, ValueError):
        return "?"
    host = info.get("location") or info.get("interface", "").replace("tcp://", "") or "?"
    return f"{host}:{info.get('registration', '?')}"


def _nodes(job_id: str) -> str:
    try:
        proc = run(["scontrol", "-o", "show", "job", str(job_id)], None, 10)
    except SlurmError:
        return "the compute node"
    fields = dict(kv.split("=", 1) for kv in proc.stdout.split() if "=" in kv)
    nodes = fields.get("NodeList") or fields.get("BatchHost") or ""
    if not nodes or nodes == "(null)":
        return "the compute node"
    try:  # node[1-2] -> node1, node2
        names = run(["scontrol", "show", "hostnames", nodes], None, 10).stdout.split()
    except SlurmError:
        names = []
    return ", ".join(names) if names else nodes


def _pending_cause(reason: str, profile: str) -> tuple[str, str]:
    if reason.startswith("Dependency"):
        return (f"Slurm can never run this request ({reason}): it depends on a job that failed or "
                f"was cancelled", f"remove the --dependency option: clusterml profile set {profile} "
                f"extra_sbatch=[...]")
    if reason in ("InvalidAccount", "InvalidQOS"):
        return (f"Slurm can never run this request ({reason}): the account or QOS is not valid for you",
                f"clusterml profile set {profile} account=<yours> qos=<yours> "
                "(sacctmgr show assoc user=$USER)")
    if reason.startswith(("Assoc", "QOS")):
        return (f"Slurm will not run this request now ({reason}): a limit of your account or QOS is "
                f"reached", "cancel other jobs of yours, or ask for fewer nodes/CPUs/time")
    if reason in ("ReqNodeNotAvail", "NodeDown", "PartitionDown", "PartitionInactive"):
        return (f"Slurm cannot run this request ({reason}): its nodes or partition are down, drained "
                f"or reserved", f"clusterml profile set {profile} queue=<another partition> (see sinfo)")
    return (f"Slurm can never run this request ({reason}): it asks for more nodes, CPUs, time or "
            f"another partition than is allowed", f"clusterml profile set {profile} queue=<partition> "
            f"nodes=<n> timelimit=<time> (see sinfo and scontrol show partition)")


def _cause(launcher, info, tail: list[str]) -> tuple[str, str]:
    profile = os.path.basename(launcher.profile_dir or "").removeprefix("profile_") or "clusterml-slurm"
    text = "\n".join(tail)
    if info is not None and info.state.startswith("PENDING"):
        return _pending_cause(_reason(info), profile)
    if "Registration timed out" in text or ("registration" in text.lower() and "timed out" in text):
        # the address the engines actually tried (the connection file may hold a host name)
        tried = re.search(r"Registering with controller at tcp://(\S+)", text)
        where = tried.group(1) if tried else _controller_address(launcher.profile_dir, launcher.cluster_id)
        return (f"controller address {where} is not reachable from {_nodes(launcher.job_id)}",
                f"clusterml profile set {profile} controller_ip=<an address of this host that "
                f"the compute nodes reach> (clusterml doctor lists them)")
    state = "GONE" if info is None else info.state.split()[0]
    if state == "CANCELLED":
        return ("the job was cancelled (scancel, or by an administrator)",
                "start the cluster again")
    if state == "TIMEOUT":
        return ("the job reached its time limit", f"clusterml profile set {profile} timelimit=<longer>")
    return (f"the engines exited before they all registered (job {state})",
            f"read the engine log above; clusterml doctor --profile {profile} checks the setup")


def stop_data(launcher, info) -> dict:
    """The ``stop_data`` given to ipyparallel's ``notify_stop``: facts and their reading."""
    tail = _tail(launcher.output_file) if getattr(launcher, "output_file", "") else []
    cause, fix = _cause(launcher, info, tail)
    return {"job_id": launcher.job_id, "slurm": job_line(info, launcher.job_id),
            "state": "GONE" if info is None else info.state, "output": "\n".join(tail),
            "cause": cause, "fix": fix}


def start_error_text(headline: str, data: dict | None) -> str:
    """The message of :class:`clusterml.ClusterStartError`, one fact per line."""
    lines = [headline]
    data = data or {}
    if data.get("slurm"):
        lines.append(data["slurm"])
    if data.get("output"):
        lines.append("engine log (last lines):")
        lines += ["  " + line for line in data["output"].splitlines()]
    elif data.get("slurm"):
        lines += ["engine log (last lines):", "  (none: the job's engines never started)"]
    if data.get("cause"):
        lines.append(f"cause: {data['cause']}")
    if data.get("fix"):
        lines.append(f"fix: {data['fix']}")
    return "\n".join(lines)
