"""One rank's one-pass algorithms against the memory-read bound of its block (in-process).

Usage::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/kernels.py \\
        [--rows 1000000] [--features 32] [--dtype float64,float32] [--repeat 7]

For each precision it makes one block (seeded, like ``cases.generate``), measures the
time to read it once (:func:`machine.read_seconds`) and times each one-pass algorithm's
``compute`` in one process (not distributed; one BLAS thread), best of ``--repeat``.  The
ratio ``t / read`` is what the issue's target "<= 1.5x the read time" is about.  The
reference speeds of the core (``dgemm`` / ``sgemm`` on 256 x 256 tiles) and the GFLOP/s
of the cross-product GEMMs are printed too: a Gram matrix of d columns costs ``2 n d^2``
flops, which bounds it at d = 32 whatever the memory does.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.dirname(HERE))

import machine  # noqa: E402

#: Single-threaded in-process timings: this thread's CPU time (steady on a shared machine).
CLOCK = time.thread_time


def _cases(cml, fp):
    """label -> (call on the data dict, inputs it reads, whether it forms cross products)."""
    return {
        "moments": (lambda D: cml.low_order_moments(fptype=fp).compute(D["X"]), ("X",), False),
        "covariance": (lambda D: cml.covariance(fptype=fp).compute(D["X"]), ("X",), True),
        "linreg1 normEq": (lambda D: cml.linear_regression_training(
            fptype=fp, interceptFlag=True).compute(D["X"], D["Y1"]), ("X", "Y1"), True),
        "ridge4": (lambda D: cml.ridge_regression_training(fptype=fp).compute(D["X"], D["Y4"]),
                   ("X", "Y4"), True),
        "naive_bayes": (lambda D: cml.multinomial_naive_bayes_training(20, fptype=fp).compute(
            D["NB"], D["L"]), ("NB", "L"), False),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--features", type=int, default=32)
    p.add_argument("--dtype", default="float64,float32")
    p.add_argument("--repeat", type=int, default=7)
    args = p.parse_args(argv)
    from threadpoolctl import threadpool_limits

    import clusterml as cml
    from clusterml.spmd.remote import warm_up

    warm_up()                       # loads SciPy's BLAS too: limit the threads after it
    threadpool_limits(1)
    print(f"CPU: {machine.cpu_model()}")
    print(f"BLAS: {machine.blas_summary()}")
    print(f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
    print(f"reference: dgemm {machine.gemm_gflops(256, np.float64):.1f} GFLOP/s, "
          f"sgemm {machine.gemm_gflops(256, np.float32):.1f} GFLOP/s (256 x 256 tiles, 1 thread)")
    n, d = args.rows, args.features
    rng = np.random.default_rng(20261121)
    X64 = rng.standard_normal((n, d)) + rng.normal(scale=4.0, size=(16, d))[rng.integers(0, 16, n)]
    beta = rng.normal(size=(d, 4))
    Y64 = X64 @ beta + 0.1 * rng.standard_normal((n, 4))
    L64 = rng.integers(0, 20, size=(n, 1)).astype(np.float64)
    NB64 = rng.poisson(2.0, size=(n, d)).astype(np.float64)
    print(f"\n{n:,} x {d} block, one process, one thread, best of {args.repeat} "
          f"(thread CPU time); load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    head = f"{'algorithm':<18} {'dtype':<8} {'read ms':>8} {'time ms':>8} {'t/read':>7} {'GEMM GFLOP/s':>12}"
    print(head)
    print("-" * len(head))
    for name in args.dtype.split(","):
        dt = np.dtype(name)
        fp = "float" if dt == np.float32 else "double"
        data = {"X": X64.astype(dt), "Y1": np.ascontiguousarray(Y64[:, :1], dtype=dt),
                "Y4": Y64.astype(dt), "L": L64.astype(dt), "NB": NB64.astype(dt)}
        for label, (fn, reads, gram) in _cases(cml, fp).items():
            arrays = [data[r] for r in reads]
            read = machine.read_seconds(arrays, args.repeat, CLOCK)
            def call(fn=fn, data=data):
                return fn(data)

            call()
            t = machine.best_of(call, args.repeat, CLOCK)
            cols = sum(a.shape[1] for a in arrays)
            gf = f"{2.0 * n * cols * cols / t / 1e9:12.1f}" if gram else f"{'-':>12}"
            print(f"{label:<18} {name:<8} {read * 1e3:8.2f} {t * 1e3:8.2f} {t / read:7.2f} {gf}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
