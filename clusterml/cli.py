"""The ``clusterml`` command.

Subcommands are small functions: ``info`` and ``demo`` here, the launch
commands in :data:`clusterml.launch.commands.COMMANDS`; :func:`commands` is
the one table of all of them.  Each imports what it needs when it runs, so
``clusterml --help`` never initialises MPI or imports ipyparallel.  This
module imports :mod:`clusterml.launch` and :mod:`clusterml.demo`, never the
reverse.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

from ._version import __version__
from .launch.mpi import mpiexec_for_this_python

COMMANDS: dict = {}


def command(name: str, help: str):
    """Register ``fn(args)`` as subcommand ``name``; ``fn.configure(parser)`` adds its options."""

    def deco(fn):
        COMMANDS[name] = (fn, help)
        return fn

    return deco


def commands() -> dict:
    """Every subcommand: ``name -> (function, help)``, this module's first, then launch's."""
    from .launch.commands import COMMANDS as LAUNCH_COMMANDS

    return {**COMMANDS, **LAUNCH_COMMANDS}


# ----------------------------------------------------------------------------- info


def _blas_info():
    try:
        from threadpoolctl import threadpool_info

        return [{k: p.get(k) for k in ("internal_api", "num_threads", "version")}
                for p in threadpool_info()]
    except ImportError:
        return "threadpoolctl not installed"


def _info_dict(with_mpi: bool = True) -> dict:
    import numpy
    import scipy

    info = {
        "clusterml": __version__,
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "blas": _blas_info(),
        "mpiexec": mpiexec_for_this_python(),
    }
    from importlib.metadata import PackageNotFoundError, version

    try:  # the version only: importing ipyparallel is for client/ and launch/
        info["ipyparallel"] = version("ipyparallel")
    except PackageNotFoundError:
        info["ipyparallel"] = None
    if with_mpi:
        from .spmd import comm

        comm.init()
        info["mpi"] = comm.mpi_info()
        info["blas_threads_per_rank"] = comm.blas_threads() or "as OMP_NUM_THREADS etc. say"
    return info


@command("info", "versions, the MPI library mpi4py loaded, world size under mpiexec, BLAS threads")
def cmd_info(args):
    info = _info_dict()
    mpi = info["mpi"]
    if mpi["world_size"] > 1:
        # one report from rank 0 (ranks printing at once interleave their lines)
        from .spmd import comm

        everyone = comm.context(True).allgather(lambda: info, step="info")
        if mpi["world_rank"] != 0:
            return 0
        if args.json:
            print(json.dumps(everyone, indent=2, default=str))
            return 0
    elif args.json:
        print(json.dumps([info], indent=2, default=str))
        return 0
    info.pop("mpi")
    width = max(map(len, info)) + 1
    for k, v in info.items():
        print(f"{k:<{width}} {v}")
    print(f"{'mpi library':<{width}} {mpi['library']}")
    print(f"{'mpi4py':<{width}} {mpi['mpi4py']} (MPI {mpi['standard']}, {mpi['vendor']})")
    print(f"{'world size':<{width}} {mpi['world_size']}")
    return 0


cmd_info.configure = lambda p: p.add_argument("--json", action="store_true",
                                              help="print JSON: a list with one entry per rank")


# ----------------------------------------------------------------------------- demo


@command("demo", "the quick-start job: generate data, run the algorithms distributed, check, print a table")
def cmd_demo(args):
    from .demo import main as demo_main

    return demo_main(n=args.n, rows=args.rows, features=args.features, workdir=args.workdir,
                     engines=args.engines)


def _demo_options(p):
    p.add_argument("-n", type=int, default=4, help="number of MPI engines (default 4)")
    p.add_argument("--rows", type=int, default=200_000, help="rows in total (default 200000)")
    p.add_argument("--features", type=int, default=16, help="columns (default 16)")
    p.add_argument("--workdir", default=None, help="where the per-rank CSV files go (default: a temp dir)")
    p.add_argument("--engines", choices=("ipyparallel", "mpiexec"), default="ipyparallel",
                   help="run through the notebook facade (default) or a plain mpiexec job")


cmd_demo.configure = _demo_options


# ----------------------------------------------------------------------------- run


@command("run", "run a Python script with N engines (cml.Cluster.current() in it), like `scoop -n N`")
def cmd_run(args):
    from .client.run import run_script

    env = {}
    for item in args.engine_env or []:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            print(f"clusterml run: error: --engine-env {item!r} is not NAME=VALUE", file=sys.stderr)
            return 2
        env[key] = value
    if not os.path.isfile(args.script):
        print(f"clusterml run: error: no script {args.script!r}", file=sys.stderr)
        return 2
    return run_script(args.script, args.args, n=args.n, profile=args.profile, engine_env=env,
                      timeout=args.timeout, start_timeout=args.start_timeout)


def _run_options(p):
    p.add_argument("-n", type=int, default=None,
                   help="engines (default: SLURM_NTASKS inside an allocation, else the cores here)")
    p.add_argument("--profile", default=None, help="an ipyparallel profile that says how to launch")
    p.add_argument("--engine-env", action="append", metavar="NAME=VALUE",
                   help="an environment variable for the engines (repeatable)")
    p.add_argument("--timeout", type=float, default=None, help="default timeout of every call (s)")
    p.add_argument("--start-timeout", type=float, default=None, help="seconds the engines get to start")
    p.add_argument("script", help="the Python script (it runs as __main__ in this process)")
    p.add_argument("args", nargs=argparse.REMAINDER, help="the script's arguments")


cmd_run.configure = _run_options


# ----------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clusterml",
        description="Distributed machine learning on MPI engines from Jupyter, Slurm or mpiexec.",
    )
    parser.add_argument("--version", action="version", version=f"clusterml {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (fn, help_) in commands().items():
        p = sub.add_parser(name, help=help_, description=help_)
        configure = getattr(fn, "configure", None)
        if configure:
            configure(p)
        p.set_defaults(_fn=fn)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_fn", None):
        parser.print_help()
        return 2
    try:
        return int(args._fn(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
