"""Reading a rank's rows from files: CSV, ``.npy``, Parquet, HDF5 and sparse ``.npz``.

Every reader here turns a path (or a :class:`Partition` of one shared file)
into a :class:`Source`: the number of rows and columns of this rank's block,
known before any value is read where the format says so, and
:meth:`Source.read` of the rows ``[start, stop)`` of the block.  The loader
(:mod:`clusterml.spmd.inputs`) reads a small source whole; a source larger
than :attr:`InputSettings.block_bytes` is handed to an algorithm that streams
(:mod:`clusterml.spmd.blockwise`), which reads it block by block.

Every failure to read raises :class:`~clusterml.errors.InputError` naming the
file (and, for CSV, the line).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np
from traitlets import HasTraits, Int, default

from ..errors import InputError
from .sources import Source, block_range, frame_to_array, parse_csv_bytes, reading

__all__ = [
    "InputSettings",
    "Partition",
    "RankFile",
    "Source",
    "block_range",
    "frame_to_array",
    "open_source",
    "read_csv",
    "read_hdf5",
    "read_partition",
    "resolve_path",
    "settings",
    "split_hdf5_path",
]

HEADER_CHOICES = (True, False, "auto")


class InputSettings(HasTraits):
    """How large a rank's input may be before it is read in blocks.

    ``block_bytes`` (default 64 MiB, or the environment variable
    ``CLUSTERML_BLOCK_BYTES``) bounds the float64 bytes an algorithm that
    streams holds of its input at a time; inputs larger than this are read
    in blocks of at most this size.
    """

    block_bytes = Int(help="float64 bytes of input held at a time by streaming algorithms").tag(
        config=True)

    @default("block_bytes")
    def _default_block_bytes(self):
        try:
            return max(1, int(os.environ.get("CLUSTERML_BLOCK_BYTES", str(64 << 20))))
        except ValueError:
            return 64 << 20


settings = InputSettings()


def resolve_path(path, rank: int) -> str:
    """Replace ``{}`` and ``{rank}`` in ``path`` with ``rank``."""
    p = os.fspath(path)
    return p.replace("{}", str(rank)).replace("{rank}", str(rank))


def check_header(header):
    """Normalise ``header=``: True, False or "auto" (None means "auto")."""
    if header is None:
        return "auto"
    if isinstance(header, (bool, np.bool_)):
        return bool(header)
    if header == "auto":
        return header
    raise InputError(f"header={header!r} must be True, False or 'auto'")


_H5 = re.compile(r"^(?P<file>.*?\.(?:h5|hdf5|hdf|he5))(?::(?P<dset>.*))?$", re.IGNORECASE)


def split_hdf5_path(path: str):
    """``"data.h5:/group/X"`` -> ``("data.h5", "/group/X")``; not an HDF5 path -> ``(path, None)``."""
    m = _H5.match(path)
    if m is None:
        return path, None
    return m.group("file"), (m.group("dset") or None)


# --------------------------------------------------------------------------
# What a user passes


@dataclass(frozen=True)
class RankFile:
    """A per-rank file with reading options (``{}`` becomes the rank).

    Made by :func:`read_csv` or :func:`read_hdf5`; small and picklable.
    """

    path: str
    header: bool | str = "auto"
    dataset: str | None = None

    def open(self, rank: int, size: int) -> Source:
        return open_source(resolve_path(self.path, rank), self.header, self.dataset)


@dataclass(frozen=True)
class Partition:
    """One file shared by all ranks, read as contiguous row blocks.

    Made by :func:`read_partition`; small and picklable, so the notebook
    facade can send it to engines that then read their own block.

    Parameters
    ----------
    path : str
        The shared file (``.csv``, ``.npy``, ``.parquet``, ``.h5`` or ``.npz``).
    header : {True, False, "auto"}
        For CSV: whether the first line is a header (see :func:`read_csv`).
    dataset : str, optional
        For HDF5: the dataset's path inside the file.
    """

    path: str
    header: bool | str | None = "auto"
    dataset: str | None = None

    def open(self, rank: int, size: int) -> Source:
        """This rank's block as a :class:`Source` (nothing read yet but metadata)."""
        return open_source(self.path, self.header, self.dataset, part=(rank, size))

    def load(self, rank: int, size: int):
        """Read rank ``rank``'s block; returns (array or None, ncols)."""
        src = self.open(rank, size)
        return src.read_all(), src.ncols


def read_partition(path, header="auto", dataset: str | None = None) -> Partition:
    """Name one file that all ranks share; each rank reads only its contiguous block of rows.

    CSV files are cut by byte ranges at line ends (a header line is
    skipped), ``.npy`` files are read at the block's byte offset, Parquet
    files by the row groups that overlap the block, HDF5 datasets by the
    block's hyperslab (chunked and compressed datasets too).

    Parameters
    ----------
    path : str or os.PathLike
        The shared file (visible to every rank); ``"file.h5:/group/X"`` names
        an HDF5 dataset.
    header : {True, False, "auto"}
        Whether a CSV file starts with a header line ("auto": see
        :func:`sniff_header`).  None means "auto".
    dataset : str, optional
        The HDF5 dataset, when not given after the file name.

    Returns
    -------
    Partition
        A picklable description; pass it wherever a data argument is expected.
    """
    return Partition(os.fspath(path), check_header(header), dataset)


def read_csv(path, header="auto") -> RankFile:
    """A per-rank CSV file (``{}`` becomes the rank) read with ``header`` True, False or "auto".

    Parameters
    ----------
    path : str or os.PathLike
        ``"part{}.csv"``: each rank formats ``{}`` with its rank.
    header : {True, False, "auto"}
        ``"auto"`` (the default) strips a UTF-8 byte-order mark and takes the first line as a
        header when one of its fields is not a number, or when it is pandas' default header
        ``0,1,...,p-1``.

    Returns
    -------
    RankFile
        Accepted wherever a data argument is.

    Examples
    --------
    >>> import clusterml as cml
    >>> cml.read_csv("part{}.csv", header=False).header
    False
    """
    return RankFile(os.fspath(path), check_header(header), None)


def read_hdf5(path, dataset: str | None = None) -> RankFile:
    """A per-rank HDF5 dataset: ``read_hdf5("part{}.h5", "/group/X")``.

    Parameters
    ----------
    path : str or os.PathLike
        ``"part{}.h5"``: each rank formats ``{}`` with its rank.
    dataset : str, optional
        The dataset's path inside the file; optional when the file holds one dataset.

    Returns
    -------
    RankFile
        Accepted wherever a data argument is.
    """
    return RankFile(os.fspath(path), "auto", dataset)


# --------------------------------------------------------------------------
# Sources


def open_source(path: str, header="auto", dataset=None, part=None) -> Source:
    """The :class:`Source` of a per-rank file (``part=None``) or of a block of a shared file."""
    from . import csvfile, h5file

    header = check_header(header)
    fname, dset = split_hdf5_path(path)
    dataset = dataset or dset
    ext = os.path.splitext(fname)[1].lower()
    with reading(fname):
        if dataset is not None or ext in (".h5", ".hdf5", ".hdf", ".he5"):
            return h5file.HDF5Source(fname, dataset, part)
        if ext == ".npy":
            return NpySource(fname, part)
        if ext == ".npz":
            return NpzSource(fname, part)
        if ext in (".parquet", ".pq"):
            return ParquetSource(fname, part)
        if ext in (".csv", ".txt", ""):
            return csvfile.CSVSource(fname, header, part)
        raise InputError(f"{fname}: unsupported file type {ext!r} (expected .csv, .npy, .parquet, "
                         f".h5 or .npz)")


class NpySource(Source):
    """A ``.npy`` file read at byte offsets (no memory map: a map counts against the
    address-space limit of a rank, a read of a block does not)."""

    def __init__(self, path, part=None):
        self.path = path
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, fortran, dtype = read_header(fh)
            self._offset = fh.tell()
        if dtype.hasobject:
            raise InputError(f"{path}: cannot read (it holds Python objects; expected a numeric array)")
        if dtype.kind not in "biuf":
            raise InputError(f"{path}: dtype {dtype} is not numeric; expected a float or integer array")
        if len(shape) not in (1, 2):
            raise InputError(f"{path}: expected a 1-D or 2-D array, got shape {shape}")
        self._dtype, self._fortran = dtype, fortran and len(shape) == 2
        n = shape[0]
        self.ncols = shape[1] if len(shape) == 2 else 1
        self._shape = shape
        self.row0, stop = block_range(n, *part) if part else (0, n)
        self.nrows = stop - self.row0

    def read(self, start, stop):
        with reading(self.path):
            if self._fortran:
                arr = np.load(self.path, mmap_mode="r")
                out = np.array(arr[self.row0 + start:self.row0 + stop], dtype=np.float64)
                del arr
                return out
            width = self.ncols * self._dtype.itemsize
            with open(self.path, "rb") as fh:
                fh.seek(self._offset + (self.row0 + start) * width)
                count = (stop - start) * self.ncols
                arr = np.fromfile(fh, dtype=self._dtype, count=count)
            if arr.size != count:
                raise InputError(f"{self.path}: truncated file ({arr.size} of {count} values)")
            return arr.reshape(stop - start, self.ncols).astype(np.float64, copy=False)


class ParquetSource(Source):
    """A Parquet file read by the row groups that overlap the requested rows."""

    def __init__(self, path, part=None):
        import pyarrow.parquet as pq

        self.path = path
        self._pf = pq.ParquetFile(path)
        meta = self._pf.metadata
        self.ncols = meta.num_columns
        self.row0, stop = block_range(meta.num_rows, *part) if part else (0, meta.num_rows)
        self.nrows = stop - self.row0
        self._groups = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]

    def read(self, start, stop):
        a, b = self.row0 + start, self.row0 + stop
        groups, first_row, row = [], None, 0
        for g, g_rows in enumerate(self._groups):
            if row < b and row + g_rows > a:
                groups.append(g)
                first_row = row if first_row is None else first_row
            row += g_rows
        with reading(self.path):
            if not groups or b <= a:
                frame = self._pf.schema_arrow.empty_table().to_pandas()
                return frame_to_array(frame, self.path)
            table = self._pf.read_row_groups(groups).slice(a - first_row, b - a)
            return frame_to_array(table.to_pandas(), self.path)


class NpzSource(Source):
    """A sparse matrix saved by ``scipy.sparse.save_npz`` (read whole; rows sliced as CSR)."""

    sparse = True

    def __init__(self, path, part=None):
        import scipy.sparse as sp

        self.path = path
        try:
            M = sp.load_npz(path)
        except (ValueError, KeyError, OSError) as exc:
            raise InputError(f"{path}: not a sparse matrix saved by scipy.sparse.save_npz ({exc})") \
                from None
        if M.dtype.kind not in "biuf":
            raise InputError(f"{path}: dtype {M.dtype} is not numeric")
        M = sp.csr_array(M, dtype=np.float64)
        n = M.shape[0]
        self.row0, stop = block_range(n, *part) if part else (0, n)
        self._M = M[self.row0:stop] if part else M
        self.nrows, self.ncols = self._M.shape

    @property
    def nbytes(self) -> int:
        return int(self._M.data.nbytes + self._M.indices.nbytes)

    def read(self, start, stop):
        return self._M[start:stop]


__all__ += ["check_header", "parse_csv_bytes", "reading"]
