"""Inputs of a distributed computation: this rank's rows, from whatever the user has.

A *data argument* (data, dependentVariables, labels) may be

- a NumPy array, a pandas DataFrame or Series: this rank's rows (1-D becomes n x 1);
- a path to a ``.csv``, ``.npy`` or ``.parquet`` file, where ``{}`` (or
  ``{rank}``) is replaced by this rank's id: ``"data/part{}.csv"``;
- :func:`read_partition` of one file shared by all ranks: each rank reads only
  its own contiguous block of rows;
- an HDF5 dataset (``"data.h5:/group/X"``), or :func:`read_csv` /
  :func:`read_hdf5` of a per-rank file with reading options;
- a ``scipy.sparse`` matrix or array, or a ``.npz`` file from
  ``scipy.sparse.save_npz``, for the algorithms that take sparse input.

File reading lives in :mod:`clusterml.spmd.readers`; a file larger than
:attr:`readers.settings.block_bytes <clusterml.spmd.readers.InputSettings.block_bytes>`
reaches an algorithm that streams as a :class:`~clusterml.spmd.blockwise.Stream`.

:func:`load_tables` loads every data argument of a call on every rank, checks
it locally (numeric, finite, consistent row counts, the algorithm's own
checks) and agrees on the outcome in one collective, so bad input raises the
same :class:`~clusterml.errors.InputError` on every rank.  A rank may hold
zero rows; an empty per-rank file takes its column count from the others.

Nothing here modifies the user's arrays or files: arrays that are already
float64 or float32 are used as they are (no copy; the kernels convert a
cache-sized piece at a time when the algorithm's ``fptype`` differs), others
are converted into a new float64 array.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..kernels.fused import first_bad_value
from ..kernels.moments import as_plain
from .blockwise import _BLOCK_ROW0, Stream, iter_aligned, rows_from
from .readers import (
    Partition,
    RankFile,
    block_range,
    frame_to_array,
    read_csv,
    read_hdf5,
    read_partition,
    resolve_path,
    settings,
)

__all__ = [
    "read_partition",
    "Partition",
    "block_range",
    "resolve_path",
    "load_local",
    "load_tables",
    "Layout",
    "check_finite",
    "read_csv",
    "read_hdf5",
    "RankFile",
    "Rows",
    "is_sparse",
]

_frame_to_array = frame_to_array


def is_sparse(obj) -> bool:
    """True for a scipy.sparse matrix or array."""
    try:
        import scipy.sparse as sp
    except ImportError:  # pragma: no cover - scipy is a dependency
        return False
    return sp.issparse(obj)


@dataclass
class Rows:
    """A rank's block of an array the user passed whole (the facade scatters it).

    ``offset`` is the index of the block's first row in the user's array, so
    an error names the user's row.
    """

    values: object
    offset: int = 0


# Where this rank's rows come from, by input name, for error messages naming
# the user's row (set by :func:`load_tables`, read by :func:`check_finite`).
_ORIGINS: dict = {}


def describe_row(name: str, row: int) -> str:
    """Where row ``row`` of this rank's input ``name`` is, for the user."""
    row += _BLOCK_ROW0[0]
    origin = _ORIGINS.get(name)
    if origin is None:
        return f"row {row}"
    if isinstance(origin, int):
        return f"row {origin + row} of the array passed"
    return origin.describe_row(row)

# --------------------------------------------------------------------------
# Local loading and the collective agreement


def load_local(spec, rank: int, size: int, name: str = "data", stream: bool = False):
    """Turn one data argument into this rank's rows.

    Parameters
    ----------
    spec : object
        The user's argument (array, frame, sparse matrix, path, Partition, ...).
    rank, size : int
    name : str
        The input's name, for messages.
    stream : bool
        Return a file larger than ``settings.block_bytes`` as a
        :class:`~clusterml.spmd.blockwise.Stream` instead of reading it.

    Returns
    -------
    values : ndarray of shape (n_local, n_features), sparse CSR array, Stream or None
        float64 or float32 rows (a view of the user's array when it is
        already one of those), or None for an empty per-rank file whose column count is
        unknown here.
    ncols : int or None
    """
    _ORIGINS.pop(name, None)
    if isinstance(spec, Rows):
        _ORIGINS[name] = int(spec.offset)
        spec = spec.values
    if isinstance(spec, (str, os.PathLike)):
        spec = RankFile(os.fspath(spec))
    if isinstance(spec, (Partition, RankFile)):
        src = spec.open(rank, size)
        _ORIGINS[name] = src
        if src.ncols is None:
            return None, None
        if stream and not src.sparse and src.nbytes > settings.block_bytes:
            return Stream(src, name), src.ncols
        arr = src.read_all()
        if arr is None:
            return None, src.ncols
    else:
        arr = _from_object(spec, name)
    if is_sparse(arr):
        return _as_csr(arr, name), arr.shape[1]
    arr = _as_2d_float(arr, name)
    return arr, arr.shape[1]


def _as_csr(M, name):
    """A sparse input as a float64 CSR array (the user's matrix is not modified)."""
    import scipy.sparse as sp

    if M.dtype.kind not in "biuf":
        raise InputError(f"{name}: sparse dtype {M.dtype} is not numeric")
    if M.ndim != 2:
        raise InputError(f"{name}: expected a 2-D sparse matrix, got shape {M.shape}")
    out = sp.csr_array(M, dtype=np.float64)
    if not out.has_canonical_format:
        out = out.copy() if out is M else out
        out.sum_duplicates()
    return out


def _from_object(obj, name):
    # Only an imported pandas makes DataFrames, so arrays never wait for pandas' import (~0.5 s,
    # which an engine does in the background after loading the algorithms).  getattr: while
    # that import runs, the module is in sys.modules without its names (and obj is no frame).
    pd = sys.modules.get("pandas")
    frame, series = getattr(pd, "DataFrame", None), getattr(pd, "Series", None)
    if frame is not None and isinstance(obj, frame):
        return _frame_to_array(obj, f"{name} (DataFrame)")
    if series is not None and isinstance(obj, series):
        return _frame_to_array(obj.to_frame(), f"{name} (Series)")
    if obj is None:
        raise InputError(f"{name}: no input given (None)")
    if isinstance(obj, np.ma.MaskedArray):
        mask = np.ma.getmaskarray(obj)
        if mask.any():
            where = np.argwhere(mask.reshape(len(mask), -1))[0]
            raise InputError(f"{name}: a masked array with {int(mask.sum())} masked value(s), the "
                             f"first at {describe_row(name, int(where[0]))}, column {int(where[1])}; "
                             f"missing values are not supported (fill or drop them first, e.g. "
                             f"X.filled(...) or X[~X.mask.any(axis=1)])")
        return np.ma.getdata(obj)
    return obj


def _as_2d_float(arr, name) -> np.ndarray:
    if isinstance(arr, np.ndarray):
        a = arr
    else:
        try:
            a = np.asarray(arr)
        except ValueError as exc:  # ragged nested lists
            raise InputError(f"{name}: cannot make a table of {type(arr).__name__} ({exc}); "
                             f"expected rows of equal length") from None
    if a.dtype.kind not in "biuf":
        raise InputError(f"{name}: dtype {a.dtype} is not numeric; expected a float or integer array")
    if a.ndim == 1:
        a = a.reshape(-1, 1)
    elif a.ndim != 2:
        raise InputError(f"{name}: expected a 1-D or 2-D array, got {a.ndim}-D with shape {a.shape}")
    if a.dtype not in (np.float64, np.float32):
        a = a.astype(np.float64)  # a new array: the user's stays as it was
    return a


# Squares (and sums of squares) of larger values overflow float64.
OVERFLOW_LIMIT = 1e150


def check_finite(X: np.ndarray, name: str = "data") -> None:
    """Raise InputError naming the first NaN, infinity or overflowing value of ``X``.

    One compiled pass that stops at the first bad value.  Values beyond
    1e150 are refused because their squares, which every algorithm here
    sums, overflow float64.
    """
    if is_sparse(X):
        data = np.ascontiguousarray(X.data).reshape(-1, 1)
        bad = first_bad_value(data, OVERFLOW_LIMIT) if data.size else None
        if bad is None:
            return
        k = bad[0]
        r, c = int(np.searchsorted(X.indptr, k, side="right") - 1), int(X.indices[k])
        v = X.data[k]
    else:
        if X.size == 0:
            return
        bad = first_bad_value(as_plain(X), OVERFLOW_LIMIT)
        if bad is None:
            return
        r, c = bad
        v = X[r, c]
    where = describe_row(name, int(r))
    if np.isfinite(v):
        raise InputError(f"{name}: {v:.3g} at {where}, column {c} is too large (|value| must be "
                         f"<= {OVERFLOW_LIMIT:.0e}, or squares overflow float64); rescale the data")
    raise InputError(f"{name}: {v} at {where}, column {c}; values must be finite")


@dataclass
class Layout:
    """How the rows of a distributed table are spread over the ranks.

    Attributes
    ----------
    counts : list of int
        Rows on each rank, in rank order.
    rank : int
        This rank.
    ncols : dict of str to int
        Columns of each table input.
    """

    counts: list
    rank: int
    ncols: dict = field(default_factory=dict)

    @property
    def total(self) -> int:
        return int(sum(self.counts))

    @property
    def offset(self) -> int:
        """Global index of this rank's first row (exclusive scan of the counts)."""
        return int(sum(self.counts[: self.rank]))

    @property
    def n_local(self) -> int:
        return int(self.counts[self.rank])


SPARSE_ALGORITHMS = ("low_order_moments", "covariance", "multinomial_naive_bayes_training",
                     "multinomial_naive_bayes_prediction", "kmeans_init", "kmeans")


def _sparse_refused(what: str, name: str) -> InputError:
    return InputError(f"{what}: sparse input ({name}) is not supported; sparse CSR input works for "
                      f"{', '.join(SPARSE_ALGORITHMS)} (or pass a dense array)")


def load_tables(ctx, specs: dict, local_check: Callable | None = None, finite: bool = True,
                algorithm=None):
    """Load every table input on every rank and agree on the outcome (one collective).

    Parameters
    ----------
    ctx : clusterml.spmd.comm.Context
    specs : dict of str to object
        ``{"data": ..., "dependentVariables": ...}``: the user's arguments.
    local_check : callable, optional
        ``local_check(arrays)`` raises :class:`InputError` for algorithm
        specific problems of this rank's rows (labels out of range, ...).
        It is only called on ranks that hold rows.
    finite : bool
        Check every value is finite.
    algorithm : Algorithm, optional
        Its ``_accepts_sparse`` lets a sparse ``data`` through (other tables
        are made dense); its ``_streams`` lets a large file through as a
        :class:`~clusterml.spmd.blockwise.Stream` (checked here in one pass
        of blocks).

    Returns
    -------
    arrays : dict of str to ndarray of shape (n_local, n_features), CSR array or Stream
    layout : Layout

    Raises
    ------
    InputError
        On every rank, naming the failing ranks and causes.
    """
    what = type(algorithm).__name__ if algorithm is not None else "this algorithm"
    accept_sparse = bool(getattr(algorithm, "_accepts_sparse", False))
    stream = bool(getattr(algorithm, "_streams", False))

    def local():
        arrays, ncols = {}, {}
        for name, spec in specs.items():
            arr, nc = load_local(spec, ctx.rank, ctx.size, name, stream=stream)
            if is_sparse(arr):
                if not accept_sparse:
                    raise _sparse_refused(what, name)
                if name != "data":
                    arr = np.asarray(arr.toarray(), dtype=np.float64)
            if arr is not None and finite and not isinstance(arr, Stream):
                check_finite(arr, name)
            arrays[name], ncols[name] = arr, nc
        streams = [a for a in arrays.values() if isinstance(a, Stream)]
        if streams and (finite or local_check is not None or
                        any(a.source.nrows is None for a in streams)):
            _check_streams(arrays, finite, local_check)
        rows = {n: (0 if a is None else a.shape[0]) for n, a in arrays.items()}
        if len(set(rows.values())) > 1:
            detail = ", ".join(f"{n} has {r}" for n, r in rows.items())
            raise InputError(f"inputs have different numbers of rows: {detail}")
        if local_check is not None and any(r for r in rows.values()) and \
                not any(isinstance(a, Stream) for a in arrays.values()):
            local_check(arrays)
        return arrays, ncols, next(iter(rows.values())) if rows else 0

    # The arrays stay local: only counts and column numbers are gathered.
    box = {}

    def local_meta():
        arrays, ncols, nrows = local()
        box["arrays"] = arrays
        return ncols, nrows, [n for n, a in arrays.items() if is_sparse(a)]

    metas = ctx.allgather(local_meta, step="load input")
    arrays = box["arrays"]
    counts = [m[1] for m in metas]
    agreed = {}
    for name in specs:
        seen = {r: m[0][name] for r, m in enumerate(metas) if m[0][name] is not None}
        widths = sorted(set(seen.values()))
        if len(widths) > 1:
            by_width = {w: [r for r, c in seen.items() if c == w] for w in widths}
            detail = "; ".join(f"{w} columns on rank(s) {', '.join(map(str, rs))}"
                               for w, rs in by_width.items())
            raise InputError(
                f"{name}: the ranks disagree on the number of columns ({detail})",
                {r: ("InputError", f"{name} has {c} columns", "") for r, c in seen.items()},
            )
        agreed[name] = widths[0] if widths else None
    if sum(counts) == 0:
        raise InputError("no rows at all: every rank's input is empty")
    sparse = {n for m in metas for n in m[2]}
    for name, width in agreed.items():
        if arrays[name] is None:
            arrays[name] = np.empty((0, width or 0), dtype=np.float64)
        if name in sparse and not is_sparse(arrays[name]):
            # every rank takes the sparse code path when one does (same collectives)
            arrays[name] = _as_csr(_materialize(arrays[name]), name)
    return arrays, Layout(counts=counts, rank=ctx.rank, ncols=agreed)


def _materialize(a):
    return a.materialize() if isinstance(a, Stream) else a


def _check_streams(arrays: dict, finite: bool, local_check) -> None:
    """One pass over this rank's blocks: count rows, check values, run the algorithm's checks."""
    for row0, blocks in iter_aligned(arrays, check_rows=True):
        with rows_from(row0):
            if finite:
                for name in blocks:
                    check_finite(blocks[name], name)
            if local_check is not None and len(next(iter(blocks.values()))):
                local_check(blocks)
        del blocks  # before the next block is read
