"""One rank of the daal4py benchmark job (runs in daal4py's own virtual environment).

Started by ``bench.py`` as::

    <d4p-venv>/bin/mpiexec -n 2 <d4p-venv>/bin/python benchmarks/_daal4py_worker.py '<json spec>'

with the spec ``{"impl": "daal4py", "algorithms": [...], "paths": {name: .npy}, "repeat": r,
"threads": t}``.  Prints ``BENCH {json}`` on rank 0 with, per algorithm, ``seconds`` (best of
``repeat``, maximum over ranks), ``peak_over_block`` (peak RSS growth plus the block, over the
block), ``bytes`` (None: daal4py's traffic is not observable), ``version`` (daal4py's) and, if
daal4py could not run the algorithm, ``error`` (with ``seconds`` None).

This file must not import clusterml: daal4py's environment does not have it, and the
comparison must not load it.  It imports ``cases.py`` (numpy only at import) and the
measuring helpers of ``worker.py`` (which import clusterml only inside ``main``).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import traceback

# A single machine: Intel MPI's shared-memory transport only.  Without it, older impi-rt
# wheels (2021.13) abort in MPI_Init here (libfabric finds no usable provider); set before
# MPI_Init, and overridable from the environment.
os.environ.setdefault("I_MPI_FABRICS", "shm")

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import cases  # noqa: E402
import machine  # noqa: E402  (numpy only at import)
from worker import reset_peak, rss_now_bytes, rss_peak_bytes  # noqa: E402

# Positional parameters of daal4py's constructors that cases.py gives by name.
POSITIONAL = {"kmeans": ("nClusters",), "kmeans_init": ("nClusters",),
              "multinomial_naive_bayes_training": ("nClasses",)}


def load(paths, names, rank, size, dtype="float64"):
    """This rank's contiguous block of each input, in memory, C-contiguous ``dtype``.

    ``C0`` (the k-means start) is the first ``cases.K`` rows of X on every rank; labels and
    responses are already n x 1 (or n x r) in their files.
    """
    out = []
    for n in names:
        arr = np.load(paths["X" if n == "C0" else n], mmap_mode="r")
        blk = arr[: cases.K] if n == "C0" else arr[len(arr) * rank // size: len(arr) * (rank + 1) // size]
        # np.array copies always (np.ascontiguousarray would return the contiguous memory-mapped
        # slice itself: reading it during the call would then count the file pages as peak RSS)
        blk = np.array(blk, dtype=dtype, order="C")
        out.append(blk.reshape(-1, 1) if blk.ndim == 1 else blk)
    return out


def build(d4p, name, params):
    """``getattr(d4p, name)(distributed=True, **params)``, positional ones first."""
    params = dict(params)
    args = [params.pop(p) for p in POSITIONAL.get(name, ()) if p in params]
    return getattr(d4p, name)(*args, distributed=True, **params)


def main(spec):
    import daal4py as d4p

    d4p.daalinit(int(spec["threads"]))  # threads only; MPI starts with mpi4py's import
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    version = ".".join(re.findall(r"\d+", str(d4p._get__version__()))[:3])

    out = {}
    for name in spec["algorithms"]:
        case = cases.CASES[name]
        d4p_name, params = case["daal4py"]
        inputs = load(spec["paths"], case["inputs"], rank, size, spec.get("dtype", "float64"))
        params = {**params, "fptype": cases.fptype_of(inputs)}
        block_bytes = sum(x.nbytes for x in inputs if x.shape[0] > cases.K) or 1
        reset_peak()
        base = rss_now_bytes()
        best, error = float("inf"), None
        for _ in range(spec["repeat"]):
            comm.Barrier()
            t = time.perf_counter()
            try:
                # constructed inside the clock, as clusterml's case does
                build(d4p, d4p_name, params).compute(*inputs)
                failed = None
            except Exception as exc:  # e.g. an algorithm this daal4py version lacks
                failed = f"{type(exc).__name__}: {exc}"
                print(f"# rank {rank}: daal4py {name}:\n{traceback.format_exc()}", file=sys.stderr,
                      flush=True)
            dt = time.perf_counter() - t
            # Every rank learns of a failure on any rank, and all skip the algorithm together.
            # (A rank failing inside daal4py after the others entered one of its collectives
            # would leave them waiting; bench.py's --timeout ends such a job.)
            errors = comm.allgather(failed)
            if any(errors):
                error = next(e for e in errors if e)
                break
            best = min(best, comm.allreduce(dt, op=MPI.MAX))
        grow = comm.allreduce(rss_peak_bytes() - base, op=MPI.MAX)
        out[name] = {"seconds": None if error else best,
                     "peak_over_block": None if error else (block_bytes + grow) / block_bytes,
                     "bytes": None, "version": version, "error": error}
        del inputs
    assert "clusterml" not in sys.modules, "the daal4py worker must not load clusterml"
    if rank == 0:
        out["_blas"] = machine.blas_summary() + f"; daal4py {version} (oneDAL's own kernels)"
        print("BENCH " + json.dumps(out), flush=True)
    comm.Barrier()
    # daal4py 2024.x finalises MPI here (else its exit-time destructor calls MPI_Finalize
    # after mpi4py's and Intel MPI complains); 2026.x does not, and mpi4py finalises at exit.
    d4p.daalfini()


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
