"""One benchmark process (a rank of clusterml's mpiexec job, or the single NumPy/sklearn process).

Prints ``BENCH {json}`` on rank 0: per algorithm, the best time (max over
ranks), peak RSS growth over the block size, and bytes contributed to
collectives per call.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cases


def reset_peak() -> None:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass


def rss_peak_bytes() -> int:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def rss_now_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def load(paths, names, rank, size, dtype="float64"):
    """This rank's contiguous block of each input, in memory (not a memory map), in ``dtype``."""
    out = []
    for n in names:
        src = paths["X" if n == "C0" else n]
        arr = np.load(src, mmap_mode="r")
        if n == "C0":
            out.append(np.array(arr[: cases.K], dtype=dtype))
            continue
        a, b = len(arr) * rank // size, len(arr) * (rank + 1) // size
        out.append(np.array(arr[a:b], dtype=dtype))
    return out


def main(spec):
    impl = spec["impl"]
    distributed = impl == "clusterml"
    if distributed:
        from mpi4py import MPI

        import clusterml as cml
        from clusterml.spmd import comm as cml_comm

        cml.init()
        # As engines do at setup: load the compiled kernels before anything is timed or its
        # memory measured (the first load of numba's cache costs ~100 MB of RSS, once).
        from clusterml.spmd.remote import warm_up

        warm_up()
        comm = MPI.COMM_WORLD
        rank, size = comm.Get_rank(), comm.Get_size()
        cml_comm.enable_stats(True)
    else:
        comm, rank, size = None, 0, 1
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(spec["threads"])
    except ImportError:
        pass

    import machine

    out = {}
    for name in spec["algorithms"]:
        case = cases.CASES[name]
        inputs = load(spec["paths"], case["inputs"], rank, size, spec.get("dtype", "float64"))
        block_bytes = sum(x.nbytes for x in inputs if x.ndim == 2 and x.shape[0] > cases.K) or 1
        fn = case[impl]
        reset_peak()
        base = rss_now_bytes()
        best = float("inf")
        nbytes = None
        for _ in range(spec["repeat"]):
            if comm is not None:
                comm.Barrier()
                cml_comm.reset_stats()
            t = time.perf_counter()
            fn(inputs)
            dt = time.perf_counter() - t
            if comm is not None:
                dt = comm.allreduce(dt, op=MPI.MAX)
                nbytes = cml_comm.stats()["bytes"]
            best = min(best, dt)
        grow = rss_peak_bytes() - base
        read = None
        if distributed and name in cases.ONE_PASS:
            # the time to read this rank's block once, measured here (max over ranks, as the call)
            read = comm.allreduce(machine.read_seconds([x for x in inputs if x.shape[0] > cases.K],
                                                       max(5, spec["repeat"])), op=MPI.MAX)
        if comm is not None:
            grow = comm.allreduce(grow, op=MPI.MAX)
        out[name] = {"seconds": best, "peak_over_block": (block_bytes + grow) / block_bytes,
                     "bytes": nbytes, "read_seconds": read}
        del inputs
    if rank == 0:
        out["_blas"] = machine.blas_summary()
        print("BENCH " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
