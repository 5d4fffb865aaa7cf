"""``clusterml doctor``'s Slurm checks: ``sinfo``, and a test job from the Slurm profile.

The test job is rendered from the profile's own engine template (its MPI mode, setup
lines, account, partition), so it starts the way the engines will. When the partition has
two nodes or more it runs one task on each of two nodes (``--nodes=2
--ntasks-per-node=1``), so it tests MPI *between* nodes and the controller's address from
*every* node. Each task reports its MPI world and connects to a TCP socket opened here on
the address the engines would be given for the controller (the profile's controller ip /
location, or this host's name, resolved on the node as ipyparallel's engines do), and to
every other address of this host (from psutil), so that a multi-homed login host whose
name resolves to an address the nodes cannot reach is found before any start, with the
address that works named in the fix.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

from . import slurmctl as S
from .probes import PROBE, Check, _first_lines, _read_probes, _run, _world_verdict
from .profiles import profile_dir
from .slurm import write_batch_script

__all__ = ["check_sinfo", "check_slurm_job", "check_loopback", "controller_address", "local_addresses",
           "partition_nodes"]

SLURM_PROFILE = "clusterml-slurm"


def check_sinfo() -> tuple[Check, list[dict]]:
    """``sinfo`` answers and lists nodes; returns the nodes (name, addr, hostname, partition, state)."""
    if shutil.which("sinfo") is None:
        return Check("slurm", "skipped", "Slurm commands not found (sinfo not on PATH)"), []
    rc, out = _run(["sinfo", "-h", "-N", "-o", "%N|%o|%n|%P|%T"], timeout=30)
    if rc != 0:
        return Check("slurm", "problem", "sinfo cannot reach Slurm", _first_lines(out, 4),
                     "check that slurmctld runs and SLURM_CONF points to its slurm.conf"), []
    nodes = []
    for line in out.splitlines():
        parts = line.strip().split("|")
        if len(parts) == 5:
            nodes.append(dict(name=parts[0], addr=parts[1], hostname=parts[2], partition=parts[3],
                              state=parts[4]))
    if not nodes:
        return Check("slurm", "problem", "sinfo answers but lists no nodes", out.strip()), []
    states = sorted({n["state"] for n in nodes})
    return Check("slurm", "ok", f"sinfo answers: {len({n['name'] for n in nodes})} node(s), states {states}",
                 ", ".join(f"{n['name']}@{n['addr']} ({n['partition']})" for n in nodes[:8])), nodes


def partition_nodes(template: str, nodes: list[dict]) -> list[str]:
    """Nodes of the partition the template asks for (or of the default partition, marked ``*``)."""
    m = re.search(r"^#SBATCH\s+(?:--partition[= ]|-p\s*)\"?([^\"\s]+)", template, re.M)
    if m:
        wanted = set(m.group(1).split(","))
        return sorted({n["name"] for n in nodes if n["partition"].rstrip("*") in wanted})
    return sorted({n["name"] for n in nodes if n["partition"].endswith("*")})


def _is_loopback(addr: str) -> bool:
    if addr in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(addr).is_loopback
    except ValueError:
        try:
            return ipaddress.ip_address(socket.gethostbyname(addr)).is_loopback
        except OSError:
            return False


def _nodes_are_here(nodes: list[dict]) -> bool:
    me = {socket.gethostname(), socket.gethostname().split(".")[0]}
    return all(n["hostname"] in me or _is_loopback(n["addr"]) for n in nodes)


def controller_address(cluster) -> tuple[str, str, bool]:
    """(address engines connect to, address the controller binds, controller is a Slurm job).

    With a wildcard bind and no location, ipyparallel's engines connect to the
    controller host's name (``socket.gethostname()``), resolved on the engine's node.
    """
    ctl_class = cluster.controller_launcher_class.__name__
    on_node = ctl_class.startswith("Slurm")
    bind = cluster.controller_ip or "127.0.0.1"  # ipcontroller's default ip is loopback
    if cluster.controller_location:
        addr = cluster.controller_location
    elif bind in ("*", "0.0.0.0", ""):
        addr = socket.gethostname()
    else:
        addr = bind
    return addr, bind, on_node


def local_addresses() -> dict[str, str]:
    """IPv4 address -> interface name of this host's non-loopback interfaces (psutil)."""
    import psutil

    out = {}
    for iface, addrs in psutil.net_if_addrs().items():
        for a in addrs:
            if a.family == socket.AF_INET and not ipaddress.ip_address(a.address).is_loopback:
                out[a.address] = iface
    return out


class _Listener:
    """A TCP socket on the controller's bind address that accepts and drops connections."""

    def __init__(self, bind: str):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("" if bind in ("*", "0.0.0.0") else bind, 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._loop, daemon=True)
        self._t.start()

    def _loop(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
                conn.close()
            except OSError:
                continue

    def close(self):
        self._stop.set()
        self._t.join(timeout=5)
        self.sock.close()


def check_loopback(addr: str, on_node: bool, nodes: list[dict]) -> Check | None:
    """A problem when engines on other nodes are told to connect to a loopback address."""
    if on_node or not _is_loopback(addr) or _nodes_are_here(nodes):
        return None
    return Check(
        "controller-loopback", "problem",
        f"engines are told to connect to {addr}, a loopback address, but Slurm runs them on other nodes",
        "nodes: " + ", ".join(sorted({n['hostname'] for n in nodes})),
        f"clusterml profile set {SLURM_PROFILE} controller_ip=<an address of this host the nodes reach> "
        "(or controller_ip='*' controller_location=<that address>)",
    )


def _run_probe_job(template: str, argv: list[str], spread: bool, folder: Path, timeout: float, progress):
    """Submit the probe as a 2-task job; wait for it. Returns (job id, rows, job output, info) or a Check."""
    from IPython.utils.text import EvalFormatter

    script = EvalFormatter().format(
        template, n=2, program_and_args=shlex.join(argv), output_file=str(folder / "job.out"),
        cluster_id="doctor", queue="", profile_dir=str(profile_dir(SLURM_PROFILE)),
    )
    path = write_batch_script(script, folder, "doctor.sbatch")
    try:
        job = S.sbatch(path, args=["--nodes=2", "--ntasks-per-node=1"] if spread else [], timeout=60)
    except S.SlurmError as e:
        return Check("srun-world", "problem", "Slurm refused the test job", str(e),
                     f"change the profile's settings: clusterml profile set {SLURM_PROFILE} "
                     "partition=... account=... time=... nodes=...")
    t0 = time.monotonic()
    while True:
        info = S.job_info(job.job_id)
        if S.job_ended(info):
            break
        if progress:
            progress(f"doctor: test job {job.job_id} {info.state}"
                     + (f" ({info.reason})" if info.reason not in ("", "None") else "")
                     + f", {time.monotonic() - t0:.0f} s")
        if time.monotonic() - t0 > timeout:
            S.scancel(job.job_id)
            S.wait_for_job_end(job.job_id, 60)
            return Check("srun-world", "problem",
                         f"the test job did not finish within {timeout:.0f} s: {info}",
                         "it was cancelled; the world and reachability checks could not run",
                         "retry with a longer --timeout, or a partition with free nodes")
        time.sleep(0.5)
    if progress:
        progress(None)
    out = folder / "job.out"
    text = out.read_text(errors="replace") if out.exists() else ""
    return job.job_id, _read_probes(str(folder / "out")), text, info


def check_slurm_job(cluster, nodes: list[dict], timeout: float, progress=None) -> list[Check]:
    """Run the probe job from the Slurm profile's engine template; judge world and reachability."""
    addr, bind, on_node = controller_address(cluster)
    from .launchers import batch_template_of

    template = batch_template_of(cluster)
    if not template:
        return [Check("srun-world", "problem", f"{SLURM_PROFILE} does not use clusterml's Slurm launcher",
                      fix="reinstall: clusterml profile install --force")]
    mode = re.search(r"srun --mpi=(\S+)|(mpiexec)", template)
    how = f"srun --mpi={mode.group(1)}" if mode and mode.group(1) else "mpiexec in the job"
    spread = len(partition_nodes(template, nodes)) >= 2
    # with a wildcard bind, every address of this host is tried too (the fix names one that works)
    alts = {} if on_node or bind not in ("*", "0.0.0.0", "") else local_addresses()
    listener = None
    try:
        if not on_node:
            try:
                listener = _Listener(bind)
            except OSError as e:
                return [Check("controller-address", "problem", f"cannot listen on {bind}: {e}",
                              fix=f"clusterml profile set {SLURM_PROFILE} "
                                  "controller_ip=<an address of this machine, or '*'>")]
        jobs = profile_dir(SLURM_PROFILE) / "jobs"
        jobs.mkdir(mode=0o700, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="doctor-", dir=jobs))  # shared with compute nodes
        try:
            (folder / "probe.py").write_text(PROBE)
            (folder / "out").mkdir()
            argv = [sys.executable, str(folder / "probe.py"), str(folder / "out")]
            argv += [addr, str(listener.port), ",".join(alts)] if listener else ["-", "0"]
            ran = _run_probe_job(template, argv, spread, folder, timeout, progress)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        if listener:
            listener.close()
    if isinstance(ran, Check):
        return [ran]
    job_id, rows, joblog, info = ran
    checks = [_world_check(rows, how, job_id, spread, joblog, info)]
    if on_node:
        checks.append(Check("controller-address", "ok",
                            "the controller runs as a Slurm job (on_compute_node)"))
    elif rows:
        checks.append(_reach_check(rows, addr, bind, listener.port, alts))
    loop = check_loopback(addr, on_node, nodes)
    if loop is not None:
        checks.append(loop)
    return checks


def _world_check(rows, how, job_id, spread, joblog, info) -> Check:
    verdict, desc = _world_verdict(rows, 2)
    hosts = sorted({r.get("host") for r in rows})
    where = f" across 2 nodes ({', '.join(hosts)})" if spread else " on one node (the partition has one)"
    if verdict == "one":
        return Check("srun-world", "ok", f"{how} gives one world of size 2{where} (Slurm job {job_id})", desc)
    if verdict == "singletons":
        return Check(
            "srun-world", "problem", f"{how} gives 2 singletons, not one world (Slurm job {job_id})",
            f"{desc}. srun without an MPI plugin that mpi4py's MPI speaks starts N separate size-1 worlds.",
            f"clusterml profile set {SLURM_PROFILE} mpi=pmi2 (MPICH, Intel MPI), mpi=pmix (usually Open MPI) "
            "or mpi=mpiexec",
        )
    return Check("srun-world", "problem", f"the test job did not give one world ({info})",
                 f"{desc}; job output: {_first_lines(joblog, 8)}",
                 "read the job output above; check the profile's setup lines and MPI mode"
                 + ("; between nodes, MPI may pick an interface the nodes share but cannot route "
                    "(e.g. docker0): pin it (FI_TCP_IFACE / UCX_NET_DEVICES) in the engines' environment"
                    if spread else ""))


def _reach_check(rows, addr, bind, port, alts: dict) -> Check:
    """Did every task reach the controller's address? If not: the cause in words and the fix."""
    bad = [r for r in rows if r.get("reach") != "ok"]
    nodes = sorted({r["host"] for r in rows})
    if not bad:
        return Check("controller-address", "ok",
                     f"compute tasks reach the controller address {addr} (test port {port})",
                     f"controller ip {bind!r}; nodes {nodes}")
    ips = sorted({r.get("resolved") or addr for r in bad})
    bad_nodes = sorted({r["host"] for r in bad})
    summary = (f"controller address {', '.join(f'{ip}:{port}' for ip in ips)} is not reachable from "
               f"{', '.join(bad_nodes)}")
    named = f"{addr!r} (" + ("this host's name" if addr == socket.gethostname()
                             else "the profile's controller location" if addr != bind
                             else "the profile's controller ip") + ")"
    details = (f"engines are told to connect to {named}, which the nodes resolve to {', '.join(ips)}; "
               + "; ".join(f"{r['host']}: {r.get('reach')}" for r in bad))
    good = [a for a in alts if all((r.get("alts") or {}).get(a) == "ok" for r in rows)]
    if good:
        a = good[0]
        details += f". This host's address {a} ({alts[a]}) is reachable from every node"
        fix = (f"set the controller's address to {a} (interface {alts[a]}): clusterml profile set "
               f"{SLURM_PROFILE} controller_ip={a}  (or at install: --controller-interface {alts[a]})")
    else:
        fix = (f"set the controller's address to one of this host's that the compute nodes reach: "
               f"clusterml profile set {SLURM_PROFILE} controller_ip=<address>, or run the controller on a "
               f"compute node (clusterml profile install --controller-on-compute-node)")
    return Check("controller-address", "problem", summary, details, fix)
