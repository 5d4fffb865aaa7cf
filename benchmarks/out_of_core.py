"""Out of core at full size: files larger than a rank's memory, read in blocks.

Writes one ``.npy`` file per rank (``--gb`` GB each, float64, ``--features``
columns; kept in ``--datadir`` and reused), then runs ``mpiexec -n RANKS`` of
this script in worker mode.  Each rank runs every algorithm twice:

- streamed: its address space limited (RLIMIT_AS) to what it maps after
  start-up plus ``--headroom-mb``, with ``block_bytes = --block-mb``;
- in memory: the file loaded whole (``np.load``), no limit.

For each it reports rows/s (all ranks' rows over the wall time of the
collective call) and the peak growth of resident memory (VmHWM after
resetting it, minus VmRSS before; the largest over the ranks).

Example (the README's numbers)::

    .venv/bin/python benchmarks/out_of_core.py --gb 2 --ranks 2 --headroom-mb 256

The in-memory run needs the file's size in free memory per rank; on a machine
where it does not fit, pass ``--skip-in-memory``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

ALGORITHMS = ("low_order_moments", "covariance", "pca", "linear_regression_training",
              "linear_regression_prediction")


def _status(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def write_data(datadir: str, ranks: int, rows: int, p: int) -> None:
    """part{r}.npy (rows x p) and y{r}.npy per rank, written in slabs (never whole in memory)."""
    os.makedirs(datadir, exist_ok=True)
    beta = np.linspace(-1, 1, p)
    for r in range(ranks):
        path = os.path.join(datadir, f"part{r}.npy")
        if os.path.exists(path) and np.load(path, mmap_mode="r").shape == (rows, p):
            continue
        rng = np.random.default_rng(r)
        X = np.lib.format.open_memmap(path + ".tmp.npy", mode="w+", dtype=np.float64,
                                      shape=(rows, p))
        y = np.empty((rows, 1))
        for a in range(0, rows, 1 << 18):
            b = min(rows, a + (1 << 18))
            X[a:b] = rng.normal(size=(b - a, p)) + 2.0
            y[a:b, 0] = X[a:b] @ beta + rng.normal(size=b - a)
        X.flush()
        del X
        os.replace(path + ".tmp.npy", path)
        np.save(os.path.join(datadir, f"y{r}.npy"), y)


def _run(name, data, y, box):
    import clusterml as cml

    if name == "linear_regression_training":
        res = cml.linear_regression_training(interceptFlag=True, distributed=True).compute(data, y)
        box["model"] = res.model
        return res
    if name == "linear_regression_prediction":
        return cml.linear_regression_prediction(distributed=True).compute(data, box["model"])
    return getattr(cml, name)(distributed=True).compute(data)


def worker(args) -> None:
    import resource

    import clusterml as cml
    from clusterml.spmd.readers import settings

    cml.init()
    rank, size = cml.my_procid(), cml.num_procs()
    comm = cml.spmd.comm.get_comm()
    tiny = np.random.default_rng(0).normal(size=(256, args.features))
    box = {}
    for name in ALGORITHMS:  # warm up: kernels compiled, BLAS buffers allocated
        _run(name, tiny, tiny[:, :1], box)
    settings.block_bytes = args.block_mb << 20
    path = os.path.join(args.datadir, "part{}.npy")
    y = np.load(os.path.join(args.datadir, f"y{rank}.npy"))
    total = comm.allreduce(len(y))
    out = []
    modes = ["streamed"] + ([] if args.skip_in_memory else ["in memory"])
    for mode in modes:
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        if mode == "streamed":
            resource.setrlimit(resource.RLIMIT_AS, (_status("VmSize") + (args.headroom_mb << 20),
                                                    hard))
            data = path
        else:
            _reset_peak()
            base = _status("VmRSS")
            t0 = time.perf_counter()
            data = np.load(path.format(rank))
            comm.Barrier()
            out.append(dict(mode=mode, algorithm="np.load", seconds=time.perf_counter() - t0,
                            grow=comm.allreduce(_status("VmHWM") - base, op=_max())))
        box = {}
        for name in ALGORITHMS:
            comm.Barrier()
            _reset_peak()
            base = _status("VmRSS")
            t0 = time.perf_counter()
            res = _run(name, data, y, box)
            comm.Barrier()
            secs = time.perf_counter() - t0
            grow = comm.allreduce(_status("VmHWM") - base, op=_max())
            out.append(dict(mode=mode, algorithm=name, seconds=secs, rows_per_s=total / secs,
                            grow=grow))
            del res
        del data
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    if rank == 0:
        print("RESULTS " + json.dumps(dict(rows=total, ranks=size, features=args.features,
                                           file_bytes=os.path.getsize(path.format(0)),
                                           headroom=args.headroom_mb << 20,
                                           block=args.block_mb << 20, runs=out)), flush=True)
    cml.fini()


def _max():
    from mpi4py import MPI

    return MPI.MAX


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gb", type=float, default=2.0, help="GB of float64 per rank's file")
    ap.add_argument("--features", type=int, default=32)
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--headroom-mb", type=int, default=256,
                    help="address space a rank may add after start-up (streamed runs)")
    ap.add_argument("--block-mb", type=int, default=64, help="clusterml's block_bytes, MiB")
    ap.add_argument("--datadir", default=os.environ.get("CLUSTERML_BENCH_DATA",
                                                        "/tmp/clusterml-bench/out-of-core"))
    ap.add_argument("--skip-in-memory", action="store_true")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    rows = int(args.gb * 1e9) // (8 * args.features)
    write_data(args.datadir, args.ranks, rows, args.features)
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               MALLOC_ARENA_MAX="2", MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="0",
               MALLOC_TOP_PAD_="0", UCX_RCACHE_ENABLE="n", UCX_MEM_EVENTS="no")
    cmd = [mpiexec if os.path.exists(mpiexec) else "mpiexec", "-n", str(args.ranks),
           sys.executable, os.path.abspath(__file__), "--worker", "--datadir", args.datadir,
           "--features", str(args.features), "--headroom-mb", str(args.headroom_mb),
           "--block-mb", str(args.block_mb)] + (["--skip-in-memory"] if args.skip_in_memory else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULTS ")), None)
    if proc.returncode != 0 or line is None:
        sys.stderr.write(proc.stdout[-5000:] + proc.stderr[-5000:])
        return 1
    res = json.loads(line[len("RESULTS "):])
    mb = 1 << 20
    print(f"{res['ranks']} ranks x {res['file_bytes'] / 1e9:.2f} GB ({res['rows'] // res['ranks']:,} "
          f"x {res['features']} float64 per rank); streamed: address space +{res['headroom'] // mb} "
          f"MiB, block_bytes {res['block'] // mb} MiB")
    print(f"{'algorithm':32s} {'mode':10s} {'seconds':>8s} {'Mrows/s':>8s} {'peak RSS +MiB':>14s}")
    for r in res["runs"]:
        rate = f"{r['rows_per_s'] / 1e6:8.2f}" if "rows_per_s" in r else f"{'':8s}"
        print(f"{r['algorithm']:32s} {r['mode']:10s} {r['seconds']:8.2f} {rate} "
              f"{r['grow'] / mb:14.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
