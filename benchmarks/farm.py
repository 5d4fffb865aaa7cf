"""Task farming speed-up: GridSearchCV through ``cluster.joblib()`` and DEAP CMA-ES through ``cluster.map``.

Usage::

    python benchmarks/farm.py                 # 1 and 2 engines (the machine has 2 cores)
    python benchmarks/farm.py --engines 1,2,4 --repeat 3
    python benchmarks/farm.py --quick         # tiny: proves the script works
    python benchmarks/farm.py --vs-scoop      # the DEAP tutorial's workload: serial, SCOOP, cluster.map

``--vs-scoop`` (needs ``pip install scoop``) times the UL HPC tutorial's DEAP
workload, CMA-ES on Rastrigin with N = 10 (200 evaluations of microseconds per
generation, 50 generations), the same at N = 50 (1000 evaluations per
generation, 10 generations), and 2 ms tasks (N = 10, 200 evaluations of 2 ms
CPU per generation, 10 generations): serial (the built-in map), SCOOP's
``futures.map`` under ``python -m scoop -n E``, and ``cluster.map`` on E engines
with the default chunking (:func:`clusterml.client.farm.chunk_plan`) and with
the former fixed rule (2 chunks per engine), in one run.

Workloads (the two examples in ``examples/``):

* ``gridsearch``: ``GridSearchCV(SVC(kernel="rbf"), C x gamma, cv)`` on the
  digits training split, the fits sent to the engines by joblib.
* ``cmaes``: CMA-ES on Rastrigin (``--dim``, ``--ngen``, lambda = 20 dim),
  the population evaluated with ``cluster.map``, once with the bare function
  (microseconds per evaluation: the map's round trips dominate) and once with
  ``--cost-ms`` of CPU added to every evaluation (a stand-in for an expensive
  simulation, the case farming is for).

Each workload is timed in this process (``n_jobs=1`` / the built-in ``map``)
and on clusters of each ``--engines`` size, best of ``--repeat`` runs, after a
warm-up run (the engines import scikit-learn / DEAP once).  Engines run one
BLAS thread each.  The table prints seconds and the speed-up of every cluster
against the first cluster size and against the in-process run.  Results of
all runs are checked to be the same (``best_params_``, CMA-ES trajectory).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EXAMPLES = os.path.join(ROOT, "examples")
sys.path.insert(0, ROOT)  # this checkout's clusterml, also when not installed
sys.path.insert(1, EXAMPLES)

os.environ.setdefault("OMP_NUM_THREADS", "1")  # the in-process baseline: one core, like an engine
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import deap_cmaes  # noqa: E402
import gridsearch_svc  # noqa: E402


def best_of(repeat: int, fn):
    """(best seconds, last result) of ``repeat`` calls of ``fn()``."""
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def workloads(args):
    X, _, y, _ = gridsearch_svc.load_data(args.samples, seed=0)
    grid = gridsearch_svc.param_grid(args.grid)
    nfits = len(grid["C"]) * len(grid["gamma"]) * args.cv
    cm = dict(dim=args.dim, ngen=args.ngen, seed=64)
    nevals = args.ngen * 20 * args.dim
    return [
        (f"gridsearch  SVC {args.grid}x{args.grid} grid, cv={args.cv}: {nfits} fits on {len(X)} digits",
         lambda n_jobs: gridsearch_svc.grid_search(X, y, grid, cv=args.cv, n_jobs=n_jobs),
         lambda s: sorted(s.best_params_.items())),
        (f"cmaes       Rastrigin n={args.dim}, {args.ngen} gens: {nevals} evaluations of ~us",
         lambda map_fn: deap_cmaes.run_cmaes(map_fn, **cm),
         lambda r: r["min"]),
        (f"cmaes+cost  same, +{args.cost_ms:g} ms CPU per evaluation",
         lambda map_fn: deap_cmaes.run_cmaes(map_fn, cost_ms=args.cost_ms, **cm),
         lambda r: r["min"]),
    ]


def run_local(work, repeat):
    times, checks = [], []
    for i, (_, fn, check) in enumerate(work):
        arg = 1 if i == 0 else map
        fn(arg)  # warm-up (imports, caches), like the engines get
        t, out = best_of(repeat, lambda fn=fn, arg=arg: fn(arg))
        times.append(t)
        checks.append(check(out))
    return times, checks


def run_cluster(n, work, repeat):
    import clusterml as cml

    times, checks = [], []
    with cml.Cluster(n=n, engine_env=deap_cmaes.engine_env(), timeout=3600) as cluster:
        for i, (_, fn, check) in enumerate(work):
            if i == 0:
                def call(fn=fn):
                    with cluster.joblib():
                        return fn(-1)
            else:
                def call(fn=fn):
                    return fn(cluster.map)
            call()  # warm-up: the engines import scikit-learn / DEAP once
            t, out = best_of(repeat, call)
            times.append(t)
            checks.append(check(out))
    return times, checks


SCOOP_ROWS = [
    ("DEAP CMA-ES N=10: 50 gens x 200 evals (us each)", dict(dim=10, ngen=50, cost_ms=0.0)),
    ("DEAP CMA-ES N=50: 10 gens x 1000 evals (us each)", dict(dim=50, ngen=10, cost_ms=0.0)),
    ("2 ms tasks: N=10, 10 gens x 200 evals of 2 ms", dict(dim=10, ngen=10, cost_ms=2.0)),
]


def _scoop_time(engines: int, kw: dict, repeat: int) -> tuple:
    import json
    import subprocess

    cmd = [sys.executable, "-m", "scoop", "-n", str(engines), os.path.join(HERE, "_scoop_worker.py"),
           "--dim", str(kw["dim"]), "--ngen", str(kw["ngen"]), "--cost-ms", str(kw["cost_ms"]),
           "--repeat", str(repeat)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, cwd=HERE)
    for line in out.stdout.splitlines():
        if line.startswith("SCOOP_RESULT "):
            r = json.loads(line.split(" ", 1)[1])
            return r["seconds"], r["min"]
    raise SystemExit(f"SCOOP did not run: {' '.join(cmd)}\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")


def vs_scoop(engines: int, repeat: int, rows=SCOOP_ROWS) -> list:
    """Serial, SCOOP and cluster.map (default and fixed 2-chunks-per-engine) on the DEAP workloads.

    The machine is shared, so the four ways are timed close together: for each of
    ``repeat`` rounds and each row, serial, then SCOOP (one ``python -m scoop`` run:
    a warm-up, then one timed run), then the two ``cluster.map`` variants; each cell
    is the best over the rounds.
    """
    import math

    import clusterml as cml

    best = [dict(serial=math.inf, scoop=math.inf, map=math.inf, fixed=math.inf) for _ in rows]
    with cml.Cluster(n=engines, engine_env=deap_cmaes.engine_env(), timeout=3600) as cluster:
        for _, kw in rows:
            deap_cmaes.run_cmaes(map, **kw)  # warm-ups: imports, and the cost estimate
            deap_cmaes.run_cmaes(cluster.map, **kw)
        for _ in range(repeat):
            for i, (name, kw) in enumerate(rows):
                lam = 20 * kw["dim"]

                def two_per_engine(f, *its, lam=lam):
                    return cluster.map(f, *its, chunksize=math.ceil(lam / (2 * engines)))

                t, ref = best_of(1, lambda kw=kw: deap_cmaes.run_cmaes(map, **kw))
                best[i]["serial"] = min(best[i]["serial"], t)
                t, got = _scoop_time(engines, kw, 1)
                best[i]["scoop"] = min(best[i]["scoop"], t)
                outs = [got]
                for key, m in (("map", cluster.map), ("fixed", two_per_engine)):
                    t, out = best_of(1, lambda kw=kw, m=m: deap_cmaes.run_cmaes(m, **kw))
                    best[i][key] = min(best[i][key], t)
                    outs.append(out["min"])
                if any(o != ref["min"] for o in outs):
                    raise SystemExit(f"{name}: SCOOP or cluster.map gave a different CMA-ES trajectory")
    print(f"# DEAP workloads, {engines} engines / SCOOP workers; best of {repeat} interleaved rounds, "
          f"after warm-ups; {os.cpu_count()} cores")
    print(f"{'workload':<52} {'serial s':>8} {'SCOOP s':>8} {'map s':>8} {'map 2/eng s':>11} "
          f"{'SCOOP/map':>9} {'gen/s map':>9} {'gen/s SCOOP':>11}")
    table = []
    for (name, kw), b in zip(rows, best, strict=True):
        table.append(dict(workload=name, **b))
        print(f"{name:<52} {b['serial']:>8.2f} {b['scoop']:>8.2f} {b['map']:>8.2f} {b['fixed']:>11.2f} "
              f"{b['scoop'] / b['map']:>9.2f} {kw['ngen'] / b['map']:>9.1f} {kw['ngen'] / b['scoop']:>11.1f}")
    print("# same CMA-ES trajectory (min per generation) from serial, SCOOP and cluster.map on every row; "
          "map: default chunking (chunk_plan); map 2/eng: fixed ceil(lambda / (2 engines))")
    return table


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--engines", default="1,2", help="cluster sizes, comma-separated (default 1,2)")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--samples", type=int, default=None, help="digits rows (default all 1797)")
    p.add_argument("--grid", type=int, default=6)
    p.add_argument("--cv", type=int, default=3)
    p.add_argument("--dim", type=int, default=10)
    p.add_argument("--ngen", type=int, default=20)
    p.add_argument("--cost-ms", type=float, default=2.0)
    p.add_argument("--quick", action="store_true", help="tiny sizes: proves the script runs")
    p.add_argument("--vs-scoop", action="store_true",
                   help="only the DEAP workloads: serial, SCOOP and cluster.map (needs scoop)")
    args = p.parse_args(argv)
    if args.vs_scoop:
        return vs_scoop(max(int(s) for s in args.engines.split(",") if s.strip()), args.repeat)
    if args.quick:
        args.samples, args.grid, args.cv, args.dim, args.ngen, args.cost_ms, args.repeat = \
            300, 2, 2, 3, 3, 0.5, 1
    sizes = [int(s) for s in args.engines.split(",") if s.strip()]

    work = workloads(args)
    print(f"# task farming: {os.cpu_count()} cores; best of {args.repeat}; engines and the "
          f"in-process run use one BLAS thread")
    local, ref = run_local(work, args.repeat)
    results = {}
    for n in sizes:
        results[n], checks = run_cluster(n, work, args.repeat)
        for (name, _, _), a, b in zip(work, ref, checks, strict=True):
            if a != b:
                raise SystemExit(f"{name.split()[0]} on {n} engine(s) gave a different result: {b} vs {a}")

    first = sizes[0]
    head = f"{'workload':<72} {'in-proc s':>9} " + " ".join(f"{f'{n} eng s':>8}" for n in sizes)
    head += " " + " ".join(f"{f'{n}v{first}':>6} {f'{n}vloc':>6}" for n in sizes[1:])
    print(head)
    for i, (name, _, _) in enumerate(work):
        row = f"{name:<72} {local[i]:>9.2f} " + " ".join(f"{results[n][i]:>8.2f}" for n in sizes)
        row += " " + " ".join(f"{results[first][i] / results[n][i]:>6.2f} {local[i] / results[n][i]:>6.2f}"
                              for n in sizes[1:])
        print(row)
    print("# NvM: time on M engines / time on N engines (speed-up); Nvloc: in-process time / time on N "
          "engines. Same results (best_params_, CMA-ES trajectory) on every run.")
    return {"local": local, "engines": results}


if __name__ == "__main__":
    main()
