"""No whole-block dtype conversion: a one-pass algorithm allocates far less than its block.

float32 rows with ``fptype="double"`` (and float64 rows with ``"float"``) are converted,
if at all, one cache-sized block at a time inside the kernel.  NumPy reports its
allocations to :mod:`tracemalloc`, so the traced peak during ``compute`` bounds every
temporary array the call made.
"""

import tracemalloc

import numpy as np
import pytest

import clusterml as cml

ROWS, COLS = 400_000, 8


@pytest.fixture(scope="module")
def blocks():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(ROWS, COLS)) + 10.0
    Y = X @ np.arange(1.0, COLS + 1)[:, None]
    return {np.float64: (X, Y), np.float32: (X.astype(np.float32), Y.astype(np.float32))}


CALLS = {
    "moments": lambda fp, X, Y: cml.low_order_moments(fptype=fp).compute(X),
    "covariance": lambda fp, X, Y: cml.covariance(fptype=fp).compute(X),
    "linreg": lambda fp, X, Y: cml.linear_regression_training(fptype=fp, interceptFlag=True).compute(X, Y),
    "ridge": lambda fp, X, Y: cml.ridge_regression_training(fptype=fp).compute(X, Y),
    "pca": lambda fp, X, Y: cml.pca(fptype=fp).compute(X),
}


@pytest.mark.parametrize("name", sorted(CALLS))
@pytest.mark.parametrize("input_dtype,fptype", [(np.float32, "double"), (np.float64, "float"),
                                                (np.float32, "float")])
def test_no_whole_block_copy(blocks, name, input_dtype, fptype):
    X, Y = blocks[input_dtype]
    CALLS[name](fptype, X[:1000], Y[:1000])          # first-call set-up outside the measurement
    tracemalloc.start()
    try:
        res = CALLS[name](fptype, X, Y)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    block = X.nbytes + (Y.nbytes if name in ("linreg", "ridge") else 0)
    assert peak < 0.3 * block, f"{name}: peak {peak:,} bytes for a {block:,}-byte block"
    want = np.float32 if fptype == "float" else np.float64
    first = next(v for v in res.to_dict().values() if isinstance(v, np.ndarray)) \
        if name not in ("linreg", "ridge") else res.model.Beta
    assert first.dtype == want
