"""Inputs of a distributed computation: this rank's rows, from whatever the user has.

A *data argument* (data, dependentVariables, labels) may be

- a NumPy array, a pandas DataFrame or Series: this rank's rows (1-D becomes n x 1);
- a path to a ``.csv``, ``.npy`` or ``.parquet`` file, where ``{}`` (or
  ``{rank}``) is replaced by this rank's id: ``"data/part{}.csv"``;
- :func:`read_partition` of one file shared by all ranks: each rank reads only
  its own contiguous block of rows.

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

import contextlib
import io
import os
import stat
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import InputError
from ..kernels.fused import first_bad_value
from ..kernels.moments import as_plain

__all__ = [
    "read_partition",
    "Partition",
    "block_range",
    "resolve_path",
    "load_local",
    "load_tables",
    "Layout",
    "check_finite",
]

def block_range(n: int, rank: int, size: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of rank ``rank`` when ``n`` rows are split in ``size`` contiguous blocks.

    The first ``n % size`` ranks get one row more, as in ``numpy.array_split``.
    """
    return n * rank // size, n * (rank + 1) // size


def resolve_path(path, rank: int) -> str:
    """Replace ``{}`` and ``{rank}`` in ``path`` with ``rank``."""
    p = os.fspath(path)
    return p.replace("{}", str(rank)).replace("{rank}", str(rank))


# --------------------------------------------------------------------------
# Reading files


def _sniff_header(first_line: bytes) -> bool:
    """True if the first CSV line is a header (a field that is not a number)."""
    text = first_line.decode("utf-8", "replace").strip()
    if not text:
        return False
    for field_ in text.split(","):
        f = field_.strip().strip('"')
        if f == "":
            continue
        try:
            float(f)
        except ValueError:
            return True
    return False


def _parse_csv(source, path: str, header: bool, names=None) -> np.ndarray | None:
    import pandas as pd

    kw = dict(header=0 if header else None, skip_blank_lines=True)
    if names is not None:
        kw.update(header=None, names=names)
    try:
        frame = pd.read_csv(source, **kw)
    except pd.errors.EmptyDataError:
        return None
    except pd.errors.ParserError as exc:
        raise InputError(f"{path}: malformed CSV ({exc})".replace("\n", " ")) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not a text CSV file ({exc})") from None
    return _frame_to_array(frame, path)


def _frame_to_array(frame, what: str) -> np.ndarray:
    import pandas as pd

    if len(frame) == 0:
        # no rows (a header-only CSV): pandas types the columns as object, yet
        # this is zero rows of a table with these columns, not text
        return np.empty((0, frame.shape[1]), dtype=np.float64)
    bad = [str(c) for c, dt in frame.dtypes.items()
           if not (pd.api.types.is_numeric_dtype(dt) or pd.api.types.is_bool_dtype(dt))]
    if bad:
        shown = ", ".join(repr(b) for b in bad[:5]) + (" ..." if len(bad) > 5 else "")
        raise InputError(f"{what}: non-numeric column(s) {shown}; every column must be a number")
    return frame.to_numpy(dtype=np.float64)


@contextlib.contextmanager
def _reading(path: str):
    """Turn every way of failing to read ``path`` into one InputError naming the file."""
    try:
        _check_regular(path)
        yield
    except InputError:
        raise
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, expected a file") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise InputError(f"{path}: cannot read ({exc})") from None


def _check_regular(path: str) -> None:
    """Refuse what is not a regular file before opening it: reading a FIFO blocks forever
    (a hung rank) and a device such as /dev/zero never ends."""
    mode = os.stat(path).st_mode
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(path)
    if not stat.S_ISREG(mode):
        raise InputError(f"{path}: not a regular file (a pipe, socket or device); expected a "
                         f".csv, .npy or .parquet file")


def _read_file(path: str):
    """Read a whole per-rank file; returns (array or None if empty, ncols or None)."""
    ext = os.path.splitext(path)[1].lower()
    with _reading(path):
        if ext == ".npy":
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
            return arr, (arr.shape[1] if arr.ndim == 2 else None)
        if ext in (".parquet", ".pq"):
            import pandas as pd

            frame = pd.read_parquet(path)
            return _frame_to_array(frame, path), frame.shape[1]
        if ext in (".csv", ".txt", ""):
            with open(path, "rb") as fh:
                first = fh.readline()
                if not first.strip():
                    rest = fh.read(1 << 16)
                    if not rest.strip():
                        return None, None  # an empty file: zero rows, columns from the others
                    first = rest.splitlines()[0]
            header = _sniff_header(first)
            arr = _parse_csv(path, path, header)
            if arr is None:
                return None, None
            return arr, arr.shape[1]
        raise InputError(f"{path}: unsupported file type {ext!r} (expected .csv, .npy or .parquet)")


@dataclass(frozen=True)
class Partition:
    """One file shared by all ranks, read as contiguous row blocks.

    Made by :func:`read_partition`; small and picklable, so the notebook
    facade can send it to engines that then read their own block.
    """

    path: str
    header: bool | None = None

    def load(self, rank: int, size: int):
        """Read rank ``rank``'s block; returns (array, ncols)."""
        path = self.path
        ext = os.path.splitext(path)[1].lower()
        with _reading(path):
            if ext == ".npy":
                arr = np.load(path, mmap_mode="r", allow_pickle=False)
                start, stop = block_range(arr.shape[0], rank, size)
                return arr[start:stop], (arr.shape[1] if arr.ndim == 2 else None)
            if ext in (".parquet", ".pq"):
                return self._load_parquet(rank, size)
            return self._load_csv(rank, size)

    def _load_parquet(self, rank, size):
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(self.path)
        meta = pf.metadata
        n = meta.num_rows
        start, stop = block_range(n, rank, size)
        ncols = meta.num_columns
        groups, first_row, row = [], None, 0
        for g in range(meta.num_row_groups):
            g_rows = meta.row_group(g).num_rows
            if row < stop and row + g_rows > start:
                groups.append(g)
                if first_row is None:
                    first_row = row
            row += g_rows
        if not groups or stop <= start:
            schema = pf.schema_arrow
            frame = schema.empty_table().to_pandas()
            return _frame_to_array(frame, self.path), ncols
        table = pf.read_row_groups(groups)
        table = table.slice(start - first_row, stop - start)
        return _frame_to_array(table.to_pandas(), self.path), ncols

    def _load_csv(self, rank, size):
        path = self.path
        total = os.path.getsize(path)
        with open(path, "rb") as fh:
            first = fh.readline()
            header = _sniff_header(first) if self.header is None else self.header
            data_start = len(first) if header else 0
            names = None
            if header:
                names = [c.strip().strip('"') for c in first.decode().strip().split(",")]
            a = data_start + (total - data_start) * rank // size
            b = data_start + (total - data_start) * (rank + 1) // size
            start = _line_start_at_or_after(fh, a, data_start, total)
            stop = _line_start_at_or_after(fh, b, data_start, total)
            fh.seek(start)
            chunk = fh.read(max(0, stop - start))
        ncols = len(names) if names else len(first.split(b",")) if first.strip() else None
        if not chunk.strip():
            return None, ncols
        arr = _parse_csv(io.BytesIO(chunk), path, False, names=names)
        return arr, ncols


def _line_start_at_or_after(fh, pos: int, data_start: int, total: int) -> int:
    """Byte offset of the first line that starts at or after ``pos``."""
    if pos <= data_start:
        return data_start
    if pos >= total:
        return total
    fh.seek(pos - 1)
    while True:
        buf = fh.read(1 << 16)
        if not buf:
            return total
        i = buf.find(b"\n")
        if i >= 0:
            return fh.tell() - len(buf) + i + 1
        # no newline in this buffer: keep scanning


def read_partition(path, header: bool | None = None) -> Partition:
    """Name one file that all ranks share; each rank reads only its contiguous block of rows.

    CSV files are cut by byte ranges at line ends (a header line, detected
    when ``header`` is None, is skipped), ``.npy`` files are memory-mapped and
    sliced, Parquet files are read by the row groups that overlap the block.

    Parameters
    ----------
    path : str or os.PathLike
        The shared file (visible to every rank).
    header : bool, optional
        Whether a CSV file starts with a header line; detected if None.

    Returns
    -------
    Partition
        A picklable description; pass it wherever a data argument is expected.
    """
    return Partition(os.fspath(path), header)


# --------------------------------------------------------------------------
# Local loading and the collective agreement


def load_local(spec, rank: int, size: int, name: str = "data"):
    """Turn one data argument into this rank's rows.

    Returns
    -------
    values : ndarray of shape (n_local, n_features) or None
        float64 or float32 rows (a view of the user's array when it is
        already one of those), or None for an empty per-rank file whose column count is
        unknown here.
    ncols : int or None
    """
    if isinstance(spec, Partition):
        arr, ncols = spec.load(rank, size)
    elif isinstance(spec, (str, os.PathLike)):
        arr, ncols = _read_file(resolve_path(spec, rank))
    else:
        arr, ncols = _from_object(spec, name), None
    if arr is None:
        return None, ncols
    arr = _as_2d_float(arr, name)
    return arr, arr.shape[1]


def _from_object(obj, name):
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        pd = None
    if pd is not None and isinstance(obj, pd.DataFrame):
        return _frame_to_array(obj, f"{name} (DataFrame)")
    if pd is not None and isinstance(obj, pd.Series):
        return _frame_to_array(obj.to_frame(), f"{name} (Series)")
    if obj is None:
        raise InputError(f"{name}: no input given (None)")
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
    if X.size == 0:
        return
    bad = first_bad_value(as_plain(X), OVERFLOW_LIMIT)
    if bad is None:
        return
    r, c = bad
    v = X[r, c]
    if np.isfinite(v):
        raise InputError(f"{name}: {v:.3g} at row {r}, column {c} is too large (|value| must be "
                         f"<= {OVERFLOW_LIMIT:.0e}, or squares overflow float64); rescale the data")
    raise InputError(f"{name}: {v} at row {r}, column {c}; values must be finite")


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


def load_tables(ctx, specs: dict, local_check: Callable | None = None, finite: bool = True):
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

    Returns
    -------
    arrays : dict of str to ndarray of shape (n_local, n_features)
    layout : Layout

    Raises
    ------
    InputError
        On every rank, naming the failing ranks and causes.
    """

    def local():
        arrays, ncols = {}, {}
        for name, spec in specs.items():
            arr, nc = load_local(spec, ctx.rank, ctx.size, name)
            if arr is not None and finite:
                check_finite(arr, name)
            arrays[name], ncols[name] = arr, nc
        rows = {n: (0 if a is None else a.shape[0]) for n, a in arrays.items()}
        if len(set(rows.values())) > 1:
            detail = ", ".join(f"{n} has {r}" for n, r in rows.items())
            raise InputError(f"inputs have different numbers of rows: {detail}")
        if local_check is not None and any(r for r in rows.values()):
            local_check(arrays)
        return arrays, ncols, next(iter(rows.values())) if rows else 0

    # The arrays stay local: only counts and column numbers are gathered.
    box = {}

    def local_meta():
        arrays, ncols, nrows = local()
        box["arrays"] = arrays
        return ncols, nrows

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
    for name, width in agreed.items():
        if arrays[name] is None:
            arrays[name] = np.empty((0, width or 0), dtype=np.float64)
    return arrays, Layout(counts=counts, rank=ctx.rank, ncols=agreed)
