"""What every file reader of clusterml shares: the :class:`Source` of a rank's rows, the error
context that names the file, and CSV text parsing.

Kept apart from :mod:`.readers` (which picks the reader for a path) so that the readers of
:mod:`.csvfile` and :mod:`.h5file` build on it without importing the module that imports them.
"""

from __future__ import annotations

import contextlib
import os
import stat

import numpy as np

from ..errors import InputError

__all__ = ["Source", "block_range", "frame_to_array", "parse_csv_bytes", "reading"]


def block_range(n: int, rank: int, size: int) -> tuple[int, int]:
    """Rows ``[start, stop)`` of rank ``rank`` when ``n`` rows are split in ``size`` contiguous blocks.

    Rank ``r``'s block starts at row ``n * r // size``: block sizes differ by
    at most one row and the larger blocks are spread over the ranks (10 rows
    on 4 ranks: 2, 3, 2, 3), not given to the first ranks as
    ``numpy.array_split`` does (3, 3, 2, 2).  With fewer rows than ranks,
    some blocks are empty.

    Parameters
    ----------
    n : int
        Rows in total.
    rank : int
        The block's rank, ``0 <= rank < size``.
    size : int
        Number of blocks (ranks).

    Returns
    -------
    tuple of (int, int)
        ``(start, stop)``, with ``stop - start`` equal to ``n // size`` or
        ``n // size + 1``.
    """
    return n * rank // size, n * (rank + 1) // size


class Source:
    """This rank's rows of one file, readable in row ranges.

    Attributes
    ----------
    path : str
    nrows : int or None
        Rows of this rank's block (None for CSV until read).
    ncols : int or None
        Columns (None for an empty file).
    nbytes : int
        Estimated float64 bytes of the whole block.
    line0 : int or None
        For text files, the 1-based line number of the block's first row.
    """

    path: str = ""
    nrows: int | None = None
    ncols: int | None = None
    line0: int | None = None
    sparse = False

    @property
    def nbytes(self) -> int:
        return int(self.nrows or 0) * int(self.ncols or 0) * 8

    def read(self, start: int, stop: int):  # pragma: no cover - abstract
        raise NotImplementedError

    def read_all(self):
        """The whole block (float64 ndarray or a sparse CSR array), or None if empty."""
        if self.nrows is None or self.ncols is None:
            return None
        return self.read(0, self.nrows)

    def describe_row(self, row: int) -> str:
        """Where local row ``row`` is in the user's file."""
        if self.line0 is not None:
            return f"{self.path}, line {self.line0 + row}"
        return f"{self.path}, row {row + getattr(self, 'row0', 0)}"


@contextlib.contextmanager
def reading(path: str):
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
                         f".csv, .npy, .parquet, .h5 or .npz file")


def frame_to_array(frame, what: str) -> np.ndarray:
    """A numeric DataFrame as a float64 array; a clear error naming non-numeric columns."""
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


def parse_csv_bytes(source, path: str, header: bool, names=None, line0: int = 1):
    """Parse CSV text into a float64 array (None if it holds no rows)."""
    import pandas as pd

    kw = dict(header=0 if header else None, skip_blank_lines=True)
    if names is not None:
        kw.update(header=None, names=names, index_col=False)
    try:
        frame = pd.read_csv(source, **kw)
    except pd.errors.EmptyDataError:
        return None
    except pd.errors.ParserError as exc:
        raise InputError(f"{path}: malformed CSV ({exc})".replace("\n", " ")) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not a text CSV file ({exc})") from None
    return frame_to_array(frame, path)
