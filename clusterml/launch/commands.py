"""``clusterml`` subcommands for launching: ``profile``, ``start``, ``stop``, ``status``, ``doctor``.

Listed in :data:`COMMANDS`, which :mod:`clusterml.cli` reads (cli imports
launch, never the reverse); each command imports ipyparallel (and never
mpi4py) only when it runs.
"""

from __future__ import annotations

import json
import sys

#: ``name -> (function, help)`` of the launch commands; :mod:`clusterml.cli` adds them.
COMMANDS: dict = {}


def command(name: str, help: str):
    """Register ``fn(args)`` as subcommand ``name``; ``fn.configure(parser)`` adds its options."""

    def deco(fn):
        COMMANDS[name] = (fn, help)
        return fn

    return deco

DEFAULT_PROFILE = "clusterml-local"


def _cid(cluster_id) -> str:
    """A cluster id as printed: the empty id is ipyparallel's default one."""
    return "'' (the default id)" if not cluster_id else repr(cluster_id)


def _err(msg: str) -> int:
    print(f"clusterml: error: {msg}", file=sys.stderr)
    return 1


# ----------------------------------------------------------------------------- profile
def _env_pairs(items) -> dict:
    env = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--env {item!r}: expected NAME=VALUE")
        env[name] = value
    return env


@command("profile", "install the clusterml-local / clusterml-slurm ipyparallel profiles; change one setting")
def cmd_profile(args):
    from . import profiles as P

    if args.action == "list":
        for name in P.PROFILE_NAMES:
            d = P.profile_dir(name)
            print(f"{name:16} {'installed' if (d / P.CONFIG).exists() else 'not installed':14} {d}")
        return 0
    try:
        if args.action == "set":
            values = dict(P.parse_assignment(a) for a in args.assignments)
            r = P.set_values(args.name, values)
            print(f"{r.name}: set {', '.join(sorted(values))} in {r.config}")
            return 0
        settings = P.ProfileSettings(
            slurm={k: v for k, v in dict(
                account=args.account, partition=args.partition, time=args.time, nodes=args.nodes,
                ntasks_per_node=args.ntasks_per_node, cpus_per_task=args.cpus_per_task, mem=args.mem,
                extra_sbatch=args.sbatch, setup=args.setup, venv=args.venv, mpi=args.mpi, qos=args.qos,
            ).items() if v is not None},
            controller={k: v for k, v in dict(
                ip=args.controller_ip, interface=args.controller_interface,
                location=args.controller_location,
                on_compute_node=True if args.controller_on_compute_node else None,
            ).items() if v is not None},
            engine_timeout=args.engine_timeout, mpiexec=args.mpiexec, env=_env_pairs(args.env),
        )
        done = P.install(args.name or P.PROFILE_NAMES, settings, force=args.force)
    except (ValueError, FileNotFoundError) as e:
        return _err(str(e))
    for r in done:
        print(f"installed {r.name}: {r.config}"
              + (f" (previous kept as {r.backup.name})" if r.backup else ""))
    print("change a setting later with: clusterml profile set NAME key=value")
    return 0


def _profile_options(p):
    sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser("list", help="show where the profiles are and whether they are installed")
    s = sub.add_parser("set", help="change settings of an installed profile, keeping the others",
                       description="Change settings of an installed profile; the others stay. Keys: "
                       "account qos partition time nodes ntasks_per_node cpus_per_task mem extra_sbatch "
                       "setup venv mpi mpiexec srun_args env controller_ip controller_location "
                       "engine_timeout (clusterml-slurm); controller_ip engine_timeout mpi_cmd mpi_args "
                       "env (clusterml-local); or Section.trait. Values are JSON when they parse "
                       "(2, [\"--qos=x\"], {\"A\": \"1\"}), else text.")
    s.add_argument("name", choices=("clusterml-local", "clusterml-slurm"))
    s.add_argument("assignments", nargs="+", metavar="key=value")
    i = sub.add_parser(
        "install", help="write the profiles into the IPython directory ($IPYTHONDIR or ~/.ipython)",
        description="Write the profiles into the IPython directory (folders 0700, files 0600) with the "
        "given settings stored as values in ipcluster_config.json. Slurm settings go to clusterml-slurm.",
    )
    i.add_argument("--name", action="append", choices=("clusterml-local", "clusterml-slurm"),
                   help="profile to install (repeatable; default both)")
    i.add_argument("--force", action="store_true",
                   help="replace an existing, different config (kept as .bak)")
    i.add_argument("--env", action="append", metavar="NAME=VALUE",
                   help="environment variable for the engines, e.g. FI_TCP_IFACE=ib0 (repeatable)")
    g = i.add_argument_group("Slurm job settings (clusterml-slurm)")
    g.add_argument("--account")
    g.add_argument("--partition")
    g.add_argument("--qos")
    g.add_argument("--time", help="wall time of the engines job, e.g. 01:00:00")
    g.add_argument("--nodes", type=int)
    g.add_argument("--ntasks-per-node", type=int)
    g.add_argument("--cpus-per-task", type=int, help="also OMP/OPENBLAS/MKL_NUM_THREADS")
    g.add_argument("--mem", help="per node, e.g. 16G")
    g.add_argument("--sbatch", action="append", metavar="OPTION",
                   help="extra sbatch option, e.g. --sbatch=--constraint=skylake (repeatable)")
    g.add_argument("--setup", action="append", metavar="LINE",
                   help="shell line run before the engines, e.g. 'module load mpich' (repeatable)")
    g.add_argument("--venv", help="virtualenv to activate in the job")
    g.add_argument("--mpi", choices=("pmi2", "pmix", "mpiexec", "none"),
                   help="how tasks form one MPI world: srun --mpi=pmi2|pmix, or mpiexec in the job")
    c = i.add_argument_group("controller and MPI")
    c.add_argument("--controller-ip",
                   help="address the controller listens on and engines connect to ('*' = all)")
    c.add_argument("--controller-interface", help="engines connect to this interface's address, e.g. ib0")
    c.add_argument("--controller-location", help="host/address engines connect to")
    c.add_argument("--controller-on-compute-node", action="store_true",
                   help="run the controller as its own Slurm job")
    c.add_argument("--mpiexec", help="mpiexec to use (default: the one next to this Python)")
    c.add_argument("--engine-timeout", type=int, help="seconds to wait for engines (queue time included)")


cmd_profile.configure = _profile_options


# ----------------------------------------------------------------------------- start / stop / status
@command("start", "start a controller and MPI engines in the background from a profile")
def cmd_start(args):
    from ..errors import DistributedError
    from . import ipcluster as IC

    try:
        started = IC.start(args.profile, args.n, cluster_id=args.cluster_id, timeout=args.timeout,
                           show=True)
    except (DistributedError, FileExistsError, FileNotFoundError, ValueError) as e:
        return _err(f"cluster not started: {e}")
    jobs = f" (Slurm job {', '.join(started.jobs)})" if started.jobs else ""
    cid = args.cluster_id
    print(f"cluster {_cid(cid)} of profile {args.profile}: {len(started.engine_ids)} engines "
          f"registered in {started.seconds:.1f} s{jobs}")
    print(f"connect: ipyparallel.Client(profile={args.profile!r}, cluster_id={cid!r})"
          + ("  # '' is the default cluster id" if not cid else ""))
    print(f"stop:    clusterml stop --profile {args.profile}" + (f" --cluster-id {cid}" if cid else ""))
    started.client.close()
    return 0


def _start_options(p):
    p.add_argument("--profile", default=DEFAULT_PROFILE,
                   help=f"installed profile (default {DEFAULT_PROFILE})")
    p.add_argument("-n", type=int, default=4, help="number of MPI engines (default 4)")
    p.add_argument("--cluster-id", default="", help="name of this cluster (default '')")
    p.add_argument("--timeout", type=float, default=None,
                   help="seconds to wait for the engines, queue time included (default: the profile's)")


cmd_start.configure = _start_options


@command("stop", "stop a cluster started with `clusterml start` (cancels its Slurm jobs, removes its files)")
def cmd_stop(args):
    from . import ipcluster as IC

    try:
        if args.all:
            done = IC.stop_all(args.profile, timeout=args.timeout)
        else:
            done = [IC.stop(args.profile, args.cluster_id, timeout=args.timeout)]
    except FileNotFoundError as e:
        return _err(str(e))
    if not done:
        print(f"no cluster recorded in profile {args.profile}")
    status = 0
    for s in done:
        jobs = f", cancelled Slurm job {', '.join(s.jobs)}" if s.jobs else ""
        if s.left:
            status = 1
            print(f"cluster {_cid(s.cluster_id)}: still there after {args.timeout:.0f} s: "
                  f"{'; '.join(s.left)}", file=sys.stderr)
        else:
            print(f"stopped cluster {_cid(s.cluster_id)} of profile {s.profile}{jobs}")
    return status


def _stop_options(p):
    p.add_argument("--profile", default=DEFAULT_PROFILE, help=f"(default {DEFAULT_PROFILE})")
    p.add_argument("--cluster-id", default="", help="(default '')")
    p.add_argument("--all", action="store_true", help="stop every cluster of the profile")
    p.add_argument("--timeout", type=float, default=60, help="seconds to wait for jobs and processes to end")


cmd_stop.configure = _stop_options


@command("status", "list the clusters of a profile: controller, engines registered, Slurm job states")
def cmd_status(args):
    from . import ipcluster as IC
    from . import profiles as P

    names = [args.profile] if args.profile else [n for n in P.PROFILE_NAMES if P.profile_dir(n).is_dir()]
    rows = []
    for name in names:
        try:
            rows += IC.status(name)
        except FileNotFoundError as e:
            return _err(str(e))
    if args.cluster_id is not None:
        rows = [r for r in rows if r["cluster_id"] == args.cluster_id]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no clusters recorded" + (f" in profile {args.profile}" if args.profile else ""))
        return 0
    for r in rows:
        reg = "?" if r["engines_registered"] is None else r["engines_registered"]
        print(f"{r['profile']} cluster {_cid(r['cluster_id'])}: controller {r['controller']}; "
              f"engines registered: {reg}")
        for es in r["engine_sets"]:
            reason = f" ({es['reason']})" if es.get("reason") not in (None, "", "None") else ""
            where = (f"Slurm job {es['job_id']} {es['state']}" + reason
                     if es.get("job_id") else f"pid {es.get('pid')}")
            print(f"  engine set {es['engine_set']}: {es['n']} x {es['launcher']}, {where}")
        if r["error"]:
            print(f"  controller unreachable: {r['error']}")
    return 0


def _status_options(p):
    p.add_argument("--profile", default=None, help="one profile (default: the installed clusterml profiles)")
    p.add_argument("--cluster-id", default=None)
    p.add_argument("--json", action="store_true")


cmd_status.configure = _status_options


# ----------------------------------------------------------------------------- doctor
@command("doctor", "check MPI, mpiexec vs mpi4py, Slurm, profiles, controller reachability, file modes")
def cmd_doctor(args):
    from . import doctor as D

    checks = D.run_checks(
        profile=args.profile, slurm=args.slurm, timeout=args.timeout,
        progress=None if args.json else D.print_progress,
    )
    if args.json:
        print(json.dumps([c.to_dict() for c in checks], indent=2))
    else:
        D.print_report(checks)
    return 1 if any(c.status == "problem" for c in checks) else 0


def _doctor_options(p):
    p.add_argument("--profile", default=None,
                   help="the Slurm profile to check (default clusterml-slurm when installed)")
    p.add_argument("--slurm", choices=("auto", "yes", "no"), default="auto",
                   help="run the Slurm checks: auto = when sinfo is on PATH (default)")
    p.add_argument("--timeout", type=float, default=120,
                   help="seconds per test job (mpiexec world, Slurm job), queue time included")
    p.add_argument("--json", action="store_true", help="print the checks as JSON")


cmd_doctor.configure = _doctor_options
