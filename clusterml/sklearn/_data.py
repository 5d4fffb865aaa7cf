"""Where an estimator's rows live: in this process, or on engines / in files (no estimator code here).

Shared by the estimators (:mod:`._base`) and the engine side of ``cluster=`` (:mod:`._engine`), so
neither imports the other.
"""

from __future__ import annotations

import os

import numpy as np

from ..spmd import comm
from ..spmd.inputs import Partition, Rows, load_local
from ..spmd.remote import Ref

__all__ = ["on_engines"]


def on_engines(X) -> bool:
    """True if ``X`` names rows that live on engines or in files (not in this process)."""
    return isinstance(X, (Ref, Partition, Rows, str, os.PathLike))


def _load_block(spec):
    """This rank's rows of a path / partition (per-rank; no collective)."""
    rank = comm.my_procid() if comm.is_initialized() else 0
    size = comm.num_procs() if comm.is_initialized() else 1
    arr, ncols = load_local(spec, rank, size)
    return np.empty((0, ncols or 0)) if arr is None else arr
