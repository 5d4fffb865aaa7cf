"""Start time: ``cml.Cluster(n)`` usable, side by side with bare ipyparallel MPI engines.

Usage::

    python benchmarks/start_time.py                # n=4, 3 interleaved rounds
    python benchmarks/start_time.py -n 4 --rounds 5 --json start.json
    python benchmarks/start_time.py --quick        # n=2, one round: proves the script works

Each round starts and stops, in alternating order,

* **bare**: ``ipyparallel.Cluster(n=n, engines="mpi")``, ``start_cluster_sync()``,
  ``connect_client_sync()``, ``wait_for_engines(n)`` — then one ``apply`` round trip;
* **clusterml**: ``cml.Cluster(n=n)`` (controller, MPI engines, connect, engine
  setup: the MPI world checked, ``cml`` bound for ``%%px``) — then one facade
  round trip (``cluster._noop()``);

both on the ``mpiexec`` next to this interpreter, controller on 127.0.0.1, in
a throw-away IPython directory.  "ready" is the time until the first call can
be sent, "first call" until its reply is back.  For clusterml it also times a
first algorithm call right after the start (a covariance of 8 rows: it waits
for the engines' background loading of the algorithms, see
``docs/design-client.md``) and the same call again.  The phases of
ipyparallel's start are timed in both: when ``start_controller`` and
``start_engines`` returned (bare ``start_cluster`` sleeps its ``delay``, 1 s,
between the two, then finds the controller's connection file ready; clusterml
starts the engines at once and ``start_engines`` waits for that file itself,
so compare when the engines were launched, not how long ``start_engines`` took),
when all engines had registered, and for clusterml when its setup round trip
returned: "ready" minus "engines registered" is clusterml's own cost, measured
within one start and so free of the noise between two starts.

The table printed last gives, for "ready" and "first call", the median and
the spread (min .. max) of bare and of clusterml over the rounds, and of the
difference clusterml - bare taken round by round (the two ran side by side).

The machine is shared and has 2 cores: compare the two columns of one run,
never runs of different days.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # this checkout's clusterml, also when not installed

PHASES: dict = {}


def _timed_phases():
    """Record when ipyparallel's ``start_controller`` / ``start_engines`` return, in PHASES."""
    import ipyparallel as ipp

    def wrap(name):
        original = getattr(ipp.Cluster, name)

        async def timed(self, *args, **kwargs):
            try:
                return await original(self, *args, **kwargs)
            finally:
                PHASES[name] = time.perf_counter()

        setattr(ipp.Cluster, name, timed)

    for name in ("start_controller", "start_engines"):
        wrap(name)

    # clusterml's own steps after ipyparallel's: all engines registered, the setup round trip
    from clusterml.client.cluster import Cluster
    from clusterml.launch import wait

    def mark(owner, name, phase):
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            try:
                return original(*args, **kwargs)
            finally:
                PHASES[phase] = time.perf_counter()

        setattr(owner, name, timed)

    mark(wait, "wait_for_engines", "registered")
    mark(Cluster, "_setup", "setup")


def _zero():
    return 0


def run_bare(n: int, mpiexec: str, timeout: float) -> dict:
    import ipyparallel as ipp

    PHASES.clear()
    t0 = time.perf_counter()
    cluster = ipp.Cluster(n=n, engines="mpi", controller_ip="127.0.0.1", load_profile=False,
                          log_level=logging.WARNING, shutdown_atexit=False)
    cluster.config.MPIEngineSetLauncher.mpi_cmd = [mpiexec]
    try:
        cluster.start_cluster_sync()
        rc = cluster.connect_client_sync()
        rc.wait_for_engines(n, timeout=timeout)
        PHASES["registered"] = time.perf_counter()
        ready = time.perf_counter() - t0
        rc[:].apply_sync(_zero)
        first = time.perf_counter() - t0
        rc.close()
    finally:
        cluster.stop_cluster_sync()
    return {"ready": ready, "first_call": first, **_phases(t0)}


def _phases(t0) -> dict:
    return {f"{name}_done": t - t0 for name, t in PHASES.items()}


def run_clusterml(n: int, timeout: float) -> dict:
    import numpy as np

    import clusterml as cml

    PHASES.clear()
    X = np.arange(8.0 * 3).reshape(8, 3)
    t0 = time.perf_counter()
    cluster = cml.Cluster(n=n, start_timeout=timeout, timeout=timeout)
    try:
        ready = time.perf_counter() - t0
        cluster._noop()
        first = time.perf_counter() - t0
        t1 = time.perf_counter()
        cluster.covariance().compute(X)
        algo_first = time.perf_counter() - t1
        t1 = time.perf_counter()
        cluster.covariance().compute(X)
        algo_again = time.perf_counter() - t1
    finally:
        cluster.stop()
    return {"ready": ready, "first_call": first, "algorithm_first": algo_first,
            "algorithm_again": algo_again, **_phases(t0)}


def _fmt(v) -> str:
    return f"{v:8.2f}" if isinstance(v, (int, float)) else f"{'-':>8}"


def _cpu() -> str:
    """The CPU's model name and core count (the numbers only compare within one machine)."""
    name = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            name = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")),
                        name)
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores"


def _spread(values, signed=False) -> str:
    """``median [min - max]`` of ``values``."""
    f = "+.2f" if signed else ".2f"
    return (f"{statistics.median(values):{f}} [{min(values):{f}} .. {max(values):{f}}]"
            if values else "-")


def summary(runs: dict) -> tuple[list[str], dict]:
    """The table printed last: bare, clusterml and their difference, ready and first call.

    Parameters
    ----------
    runs : dict
        ``{"bare": [round, ...], "clusterml": [round, ...]}``, each round a dict
        with ``ready`` and ``first_call`` (clusterml also ``algorithm_first`` and
        ``algorithm_again``), in seconds.

    Returns
    -------
    lines : list of str
        The table.
    difference : dict
        Medians of the per-round differences clusterml - bare (``ready``,
        ``first_call``) and the differences of every round (``per_round``).
    """
    cols = ("ready", "first_call")
    pairs = list(zip(runs["bare"], runs["clusterml"], strict=True))  # one round each: measured side by side
    diffs = {c: [m[c] - b[c] for b, m in pairs] for c in cols}
    w = 26
    lines = [f"{'seconds, median [min .. max]':<30}{'ready':<{w}}{'first call':<{w}}"]
    for what in ("bare", "clusterml"):
        lines.append(f"{what:<30}" + "".join(f"{_spread([r[c] for r in runs[what]]):<{w}}"
                                             for c in cols))
    lines.append(f"{'clusterml - bare':<30}" + "".join(f"{_spread(diffs[c], True):<{w}}" for c in cols)
                 + "(per round; target: within +0.50)")
    own = [r for r in runs["clusterml"] if "registered_done" in r]
    if own:
        lines.append(f"clusterml's own steps after its engines registered (same round, no noise "
                     f"from the other start): setup round trip "
                     f"{_spread([r['setup_done'] - r['registered_done'] for r in own])}, ready "
                     f"{_spread([r['ready'] - r['registered_done'] for r in own])} after registered")
    algo = [r for r in runs["clusterml"] if "algorithm_first" in r]
    if algo:
        lines.append(f"clusterml only, after 'first call': a first algorithm call "
                     f"{_spread([r['algorithm_first'] for r in algo])}, the same again "
                     f"{_spread([r['algorithm_again'] for r in algo])}")
    difference = {c: statistics.median(diffs[c]) for c in cols}
    difference["per_round"] = diffs
    return lines, difference


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("-n", type=int, default=4, help="engines (default 4)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds for engines to register")
    p.add_argument("--quick", action="store_true", help="n=2, one round")
    p.add_argument("--json", default=None, help="also write the measurements here")
    args = p.parse_args(argv)
    if args.quick:
        args.n, args.rounds = 2, 1
    ipython_dir = os.environ["IPYTHONDIR"] = tempfile.mkdtemp(prefix="clusterml-start-time-")
    try:
        return _run(args)
    finally:
        shutil.rmtree(ipython_dir, ignore_errors=True)


def _run(args) -> int:
    t = time.perf_counter()
    import ipyparallel  # noqa: F401  (both sides import it before their clock starts)
    t_ipp = time.perf_counter() - t
    t = time.perf_counter()
    import clusterml as cml

    cml.Cluster  # noqa: B018  (the facade's own imports: numpy, the algorithm registry)
    t_cml = time.perf_counter() - t
    from clusterml.launch.mpi import mpiexec_for_this_python

    _timed_phases()
    mpiexec = mpiexec_for_this_python()
    load = os.getloadavg()
    print(f"start time, {args.n} MPI engines, {args.rounds} interleaved round(s); {_cpu()}, "
          f"load average {load[0]:.1f}", flush=True)
    print(f"client imports: ipyparallel {t_ipp:.2f} s, then clusterml's facade {t_cml:.2f} s "
          f"(not in the times below)", flush=True)
    cols = ("ready", "first_call", "start_controller_done", "start_engines_done", "registered_done",
            "setup_done", "algorithm_first", "algorithm_again")
    print(f"{'':>16}{'ready':>9}{'1st call':>9}{'ctrl up':>9}{'engines':>9}{'engines':>9}{'setup':>9}"
          f"{'1st algo':>9}{'2nd algo':>9}")
    print(f"{'round':>5} {'what':<10}{'':>18}{'launched':>9}{'launched':>9}{'register':>9}{'done':>9}"
          f"{'(client)':>9}{'(client)':>9}")
    runs = {"bare": [], "clusterml": []}
    for r in range(args.rounds):
        order = ("bare", "clusterml") if r % 2 == 0 else ("clusterml", "bare")
        for what in order:
            res = run_bare(args.n, mpiexec, args.timeout) if what == "bare" else \
                run_clusterml(args.n, args.timeout)
            runs[what].append(res)
            print(f"{r + 1:>5} {what:<10}" + "".join(f" {_fmt(res.get(c))}" for c in cols), flush=True)
    med = {w: {c: statistics.median(x[c] for x in rs) for c in cols if all(c in x for x in rs)}
           for w, rs in runs.items()}
    lines, difference = summary(runs)
    print("-" * 88)
    print("\n".join(lines))
    print(f"clusterml - bare: ready {difference['ready']:+.2f} s, first call "
          f"{difference['first_call']:+.2f} s (medians of the rounds; target: within 0.5 s; "
          f"load average now {os.getloadavg()[0]:.1f})")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"n": args.n, "rounds": args.rounds, "cpu": _cpu(), "runs": runs, "median": med,
                       "imports": {"ipyparallel": t_ipp, "clusterml_facade": t_cml},
                       "difference": difference}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
