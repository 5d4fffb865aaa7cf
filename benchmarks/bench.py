"""Benchmark clusterml against NumPy, scikit-learn and daal4py on the same data, in one run.

Usage::

    python benchmarks/bench.py                       # 2,000,000 x 32, 2 ranks x 1 thread
    python benchmarks/bench.py --quick               # tiny: proves the harness works
    python benchmarks/bench.py --algorithms covariance,pca_cor --ranks 2 --threads 1
    python benchmarks/bench.py --daal4py-python /path/to/d4p-venv/bin/python

Data are generated once (seeded) into ``.npy`` files under ``--datadir`` and
every implementation reads the same files: clusterml and daal4py each rank its
contiguous block (loaded into memory before the clock starts), NumPy and
scikit-learn all rows in one process.  Times are of the compute call only,
the best of ``--repeat`` runs, and for distributed runs the maximum over
ranks.  Peak memory is each rank's peak RSS growth during the computations,
as a multiple of its block's size; "bytes" is what one rank contributes to
clusterml's collectives per call (it does not depend on the number of rows).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(1, ROOT)  # this checkout's clusterml, also when not installed

import cases  # noqa: E402  (benchmarks/cases.py: what each algorithm runs per implementation)
import machine  # noqa: E402  (CPU model, BLAS libraries, read / GEMM reference speeds)

#: Per implementation, the BLAS libraries its worker had loaded (threadpoolctl), filled by run_worker.
BLAS: dict = {}
#: Set from --dtype / --keep-openblas-env in main.
DTYPE = "float64"
KEEP_OPENBLAS_ENV = False


def make_data(datadir: str, rows: int, features: int, needs: set) -> dict:
    """Generate (or reuse) the seeded inputs; returns name -> .npy path."""
    os.makedirs(datadir, exist_ok=True)
    paths = {}
    rng = None
    for name in sorted(needs):
        path = os.path.join(datadir, f"{name}_{rows}x{features}.npy")
        paths[name] = path
        if os.path.exists(path):
            continue
        rng = rng or np.random.default_rng(20261121)
        arr = cases.generate(name, rows, features, rng)
        tmp = path + ".tmp.npy"
        np.save(tmp, arr)
        os.replace(tmp, path)
    return paths


def _env(threads: int, python: str) -> dict:
    env = dict(os.environ)
    # the launcher's helpers (Intel MPI's mpirun runs mpiexec.hydra) come from the same
    # environment as the interpreter: its bin directory first on PATH
    env["PATH"] = os.path.dirname(python) + os.pathsep + env.get("PATH", "")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    if not KEEP_OPENBLAS_ENV:
        # This machine sets OPENBLAS_CORETYPE (and OPENBLAS_L2_SIZE) for old OpenBLAS builds;
        # they make a current OpenBLAS run its Haswell kernels on this AVX-512 CPU. Benchmarks
        # unset both together (the BLAS line of the table shows the kernels that then ran).
        env.pop("OPENBLAS_CORETYPE", None)
        env.pop("OPENBLAS_L2_SIZE", None)
    env["PYTHONPATH"] = ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


BIND = os.environ.get("CLUSTERML_BENCH_BIND", "1") != "0"


def _mpiexec(python: str) -> str:
    cand = os.path.join(os.path.dirname(python), "mpiexec")
    if os.path.exists(cand):
        return cand
    cand = os.path.join(os.path.dirname(python), "mpirun")
    return cand if os.path.exists(cand) else "mpiexec"


def run_worker(impl: str, python: str, ranks: int, threads: int, algorithms, paths, repeat: int,
               timeout: float) -> dict:
    spec = json.dumps({"impl": impl, "algorithms": algorithms, "paths": paths, "repeat": repeat,
                       "threads": threads, "dtype": DTYPE})
    worker = os.path.join(HERE, "_daal4py_worker.py" if impl == "daal4py" else "worker.py")
    cmd = [python, worker, spec]
    if ranks > 1 or impl in ("clusterml", "daal4py"):
        # One core per rank, as Intel MPI (daal4py's) pins by default and as `srun
        # --cpu-bind=cores` does on a cluster; MPICH's hydra does not bind unless asked.
        bind = ["-bind-to", "core"] if impl == "clusterml" and BIND and ranks <= (os.cpu_count() or 1) else []
        cmd = [_mpiexec(python), "-n", str(ranks)] + bind + cmd
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(threads, python), timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{impl} worker failed (rc={proc.returncode}):\n{proc.stdout[-3000:]}\n"
                           f"{proc.stderr[-5000:]}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH ")]
    got = json.loads(lines[-1][6:])
    blas = got.pop("_blas", None)
    if blas:
        BLAS.setdefault(impl, set()).add(blas)
    return got


def fmt(x, spec="{:.3f}"):
    return "-" if x is None else spec.format(x)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=2_000_000)
    p.add_argument("--features", type=int, default=32)
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--threads", type=int, default=1, help="BLAS threads per rank")
    p.add_argument("--algorithms", default=",".join(cases.available()),
                   help="comma-separated; default: every case clusterml has")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--datadir", default=os.environ.get("CLUSTERML_BENCH_DATA", "/tmp/clusterml-bench"))
    p.add_argument("--daal4py-python", default=os.environ.get("CLUSTERML_DAAL4PY_PYTHON"),
                   help="python of a virtual environment with daal4py (see benchmarks/README.md)")
    p.add_argument("--skip", default="", help="implementations to leave out, e.g. sklearn")
    p.add_argument("--quick", action="store_true", help="tiny sizes: only proves the harness runs")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--rounds", type=int, default=1,
                   help="run every implementation this many times, interleaved, and keep each one's "
                        "best: background load then hits all of them alike")
    p.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                   help="precision of the blocks every implementation gets; float32 runs clusterml "
                        "and daal4py with fptype='float'")
    p.add_argument("--keep-openblas-env", action="store_true",
                   help="keep OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE in the workers' environment "
                        "(by default both are unset for them)")
    p.add_argument("--weak-scaling", action="store_true",
                   help="clusterml only: rows/ranks rows on 1 rank vs rows on --ranks ranks "
                        "(the same rows per rank); prints the efficiency t(1) / t(ranks)")
    args = p.parse_args(argv)
    global DTYPE, KEEP_OPENBLAS_ENV
    DTYPE, KEEP_OPENBLAS_ENV = args.dtype, args.keep_openblas_env
    load_before = os.getloadavg()
    if args.quick:
        args.rows, args.features, args.repeat = 20_000, 8, 1
    algorithms = [a for a in args.algorithms.split(",") if a]
    unknown = set(algorithms) - set(cases.CASES)
    if unknown:
        p.error(f"unknown algorithm(s) {sorted(unknown)}; known: {sorted(cases.CASES)}")
    paths = make_data(args.datadir, args.rows, args.features, cases.inputs_needed(algorithms))
    if args.weak_scaling:
        return weak_scaling(args, algorithms, paths)

    impls = [("clusterml", sys.executable, args.ranks), ("numpy", sys.executable, 1),
             ("sklearn", sys.executable, 1)]
    # several daal4py environments, comma-separated: an algorithm one cannot run (daal4py
    # 2026.x has no naive Bayes) is run with the next
    for d4p_python in (args.daal4py_python or "").split(","):
        if d4p_python:
            impls.append(("daal4py", d4p_python, args.ranks))
    skip = set(args.skip.split(","))
    results = {}
    for rnd in range(args.rounds):
        this = {}
        for impl, python, ranks in impls:
            if impl in skip:
                continue
            done = this.get(impl, {})
            todo = [a for a in algorithms if cases.has(a, impl)
                    and done.get(a, {}).get("seconds") is None]
            if not todo:
                continue
            t = time.perf_counter()
            got = run_worker(impl, python, ranks, args.threads, todo, paths, args.repeat, args.timeout)
            this[impl] = {**done, **got}
            print(f"# round {rnd + 1}: {impl}: {len(todo)} algorithm(s) on {ranks} rank(s) in "
                  f"{time.perf_counter() - t:.0f} s{' with ' + python if impl == 'daal4py' else ''}",
                  file=sys.stderr, flush=True)
        merge_round(results, this)

    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"\n{args.rows:,} x {args.features} {args.dtype}, {args.ranks} rank(s) x {args.threads} thread(s), "
          f"compute call only, best of {args.repeat}"
          f"{f' in each of {args.rounds} interleaved rounds' if args.rounds > 1 else ''}; {when}")
    print_machine(load_before)
    head = (f"{'algorithm':<22} {'clusterml s':>11} {'numpy s':>9} {'sklearn s':>9} {'daal4py s':>9} "
            f"{'vs daal4py':>10} {'vs numpy':>9} {'t/read':>6} {'peak/block':>10} {'d4p peak':>8} "
            f"{'bytes/rank':>10}")
    print(head)
    print("-" * len(head))
    table = []
    d4p = results.get("daal4py", {})
    for a in algorithms:
        row = {"algorithm": a}
        for impl in ("clusterml", "numpy", "sklearn", "daal4py"):
            row[impl] = results.get(impl, {}).get(a, {}).get("seconds")
        c = results.get("clusterml", {}).get(a, {})
        row["peak_over_block"] = c.get("peak_over_block")
        row["bytes"] = c.get("bytes")
        row["daal4py_peak_over_block"] = d4p.get(a, {}).get("peak_over_block")
        row["daal4py_version"] = d4p.get(a, {}).get("version") if row["daal4py"] else None
        row["vs_daal4py"] = ((row["clusterml"] / row["daal4py"]) if row["clusterml"] and row["daal4py"]
                             else None)
        row["vs_numpy"] = (row["clusterml"] / row["numpy"]) if row["clusterml"] and row["numpy"] else None
        row["read_seconds"] = c.get("read_seconds")
        row["over_read"] = ((row["clusterml"] / row["read_seconds"])
                            if row["clusterml"] and row["read_seconds"] else None)
        table.append(row)
        print(f"{a:<22} {fmt(row['clusterml']):>11} {fmt(row['numpy']):>9} {fmt(row['sklearn']):>9} "
              f"{fmt(row['daal4py']):>9} {fmt(row['vs_daal4py'], '{:.2f}x'):>10} "
              f"{fmt(row['vs_numpy'], '{:.2f}x'):>9} {fmt(row['over_read'], '{:.2f}'):>6} "
              f"{fmt(row['peak_over_block'], '{:.2f}'):>10} "
              f"{fmt(row['daal4py_peak_over_block'], '{:.2f}'):>8} {fmt(row['bytes'], '{:,.0f}'):>10}")
    ran = [r["daal4py_version"] for r in table if r["daal4py_version"]]
    if ran:
        main_version = max(ran, key=lambda v: (ran.count(v), -ran.index(v)))  # ties: first
        others = [f"{r['algorithm']}: {r['daal4py_version']}" for r in table
                  if r["daal4py_version"] not in (None, main_version)]
        print(f"daal4py {main_version}" + (f" ({', '.join(others)})" if others else ""))
    for a, r in d4p.items():
        if r.get("error"):
            print(f"daal4py could not run {a}: {r['error']}")
    print(f"load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"date": when, "args": vars(args), "cpu": machine.cpu_model(),
                       "blas": {k: sorted(v) for k, v in BLAS.items()}, "table": table}, fh, indent=2)
    return 0


def print_machine(load_before) -> None:
    """The CPU, the BLAS each implementation ran (threadpoolctl, in its worker) and the load."""
    print(f"CPU: {machine.cpu_model()}; load average at the start "
          f"{' '.join(f'{x:.2f}' for x in load_before)}")
    for impl in sorted(BLAS):
        for line in sorted(BLAS[impl]):
            print(f"BLAS {impl}: {line}")
    print("OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE: " + (
        f"kept ({os.environ.get('OPENBLAS_CORETYPE')}, {os.environ.get('OPENBLAS_L2_SIZE')})"
        if KEEP_OPENBLAS_ENV else "unset for the workers"))
    print("t/read: clusterml's time over the time to read its block once (max over ranks; "
          "one-pass algorithms)")


def merge_round(results: dict, this: dict) -> None:
    """Keep, per implementation and algorithm, the fastest round (its peak the largest seen)."""
    for impl, algos in this.items():
        into = results.setdefault(impl, {})
        for a, r in algos.items():
            old = into.get(a, {})
            best = r if old.get("seconds") is None or (
                r.get("seconds") is not None and r["seconds"] < old["seconds"]) else old
            peaks = [x["peak_over_block"] for x in (old, r) if x.get("peak_over_block")]
            into[a] = {**best, "peak_over_block": max(peaks)} if peaks else dict(best)


def weak_scaling(args, algorithms, paths) -> int:
    """Same rows per rank on 1 and on ``args.ranks`` ranks: efficiency = t(1) / t(ranks)."""
    per_rank = args.rows // args.ranks
    small = make_data(args.datadir, per_rank, args.features, cases.inputs_needed(algorithms))
    results = {}
    for _ in range(args.rounds):            # interleaved, so background load hits both alike
        merge_round(results, {"one": run_worker("clusterml", sys.executable, 1, args.threads, algorithms,
                                                small, args.repeat, args.timeout)})
        merge_round(results, {"many": run_worker("clusterml", sys.executable, args.ranks, args.threads,
                                                 algorithms, paths, args.repeat, args.timeout)})
    one, many = results["one"], results["many"]
    print(f"\nweak scaling: {per_rank:,} x {args.features} rows per rank, 1 -> {args.ranks} ranks x "
          f"{args.threads} thread(s), best of {args.repeat} x {args.rounds} round(s); "
          f"{time.strftime('%Y-%m-%d')}")
    head = f"{'algorithm':<22} {'1 rank s':>9} {f'{args.ranks} ranks s':>10} {'efficiency':>10}"
    print(head)
    print("-" * len(head))
    table = []
    for a in algorithms:
        t1, tn = one[a]["seconds"], many[a]["seconds"]
        table.append({"algorithm": a, "one": t1, "many": tn, "efficiency": t1 / tn})
        print(f"{a:<22} {t1:>9.3f} {tn:>10.3f} {t1 / tn:>10.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"date": time.strftime("%Y-%m-%d"), "args": vars(args), "weak_scaling": table},
                      fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
