"""Iterating over a rank's rows a cache-sized block at a time."""

from __future__ import annotations

import numpy as np

__all__ = ["BLOCK_ELEMENTS", "block_rows", "iter_blocks"]

# A block of this many float64 values (2 MiB) stays in cache while a kernel
# makes its few passes over it, and temporaries stay block-sized.
BLOCK_ELEMENTS = 1 << 18


def block_rows(n_features: int) -> int:
    """Rows per block for a table with ``n_features`` columns."""
    return max(64, BLOCK_ELEMENTS // max(1, n_features))


def iter_blocks(X: np.ndarray, rows: int | None = None):
    """Yield consecutive row blocks (views) of ``X``."""
    n = X.shape[0]
    step = rows or block_rows(X.shape[1] if X.ndim > 1 else 1)
    for start in range(0, n, step):
        yield X[start:start + step]
