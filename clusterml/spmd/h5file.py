"""HDF5 datasets as row sources: a per-rank dataset or a hyperslab of a shared one.

Each rank opens the file read-only and reads only the rows it asks for
(``dataset[start:stop]``), so chunked and compressed datasets work through
h5py's own chunk cache; no MPI-IO is needed for independent hyperslab reads.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .sources import Source, block_range, reading

__all__ = ["HDF5Source"]


def _h5py():
    try:
        import h5py
    except ImportError:  # pragma: no cover - h5py is a dependency
        raise InputError("reading HDF5 needs h5py (pip install h5py)") from None
    return h5py


def _datasets(f) -> list:
    names = []
    f.visititems(lambda name, obj: names.append("/" + name) if hasattr(obj, "dtype") else None)
    return names


def _find(f, path: str, dataset):
    """The dataset object: the named one, or the file's only dataset."""
    h5py = _h5py()
    if dataset is None:
        found = _datasets(f)
        if len(found) != 1:
            listed = ", ".join(found[:10]) + (" ..." if len(found) > 10 else "") or "none"
            raise InputError(f"{path}: name the dataset (\"{path}:/group/X\" or dataset=); the file "
                             f"holds {len(found)} datasets ({listed})")
        dataset = found[0]
    obj = f.get(dataset)
    if obj is None:
        found = _datasets(f)
        listed = ", ".join(found[:10]) + (" ..." if len(found) > 10 else "") or "none"
        raise InputError(f"{path}: no dataset {dataset!r} (datasets in the file: {listed})")
    if not isinstance(obj, h5py.Dataset):
        raise InputError(f"{path}: {dataset!r} is a group, not a dataset")
    return obj, dataset


class HDF5Source(Source):
    """Rows of an HDF5 dataset (1-D becomes n x 1); a block of it when ``part=(rank, size)``."""

    def __init__(self, path, dataset=None, part=None):
        h5py = _h5py()
        self.path = path
        try:
            f = h5py.File(path, "r")
        except OSError as exc:
            raise InputError(f"{path}: not an HDF5 file ({exc})") from None
        with f:
            ds, self.dataset = _find(f, path, dataset)
            shape, dtype = ds.shape, ds.dtype
        where = f"{path}:{self.dataset}"
        if dtype.kind not in "biuf":
            raise InputError(f"{where}: dtype {dtype} is not numeric; expected a float or integer "
                             f"dataset")
        if len(shape) not in (1, 2):
            raise InputError(f"{where}: expected a 1-D or 2-D dataset, got shape {shape}")
        n = shape[0]
        self.ncols = shape[1] if len(shape) == 2 else 1
        self.row0, stop = block_range(n, *part) if part else (0, n)
        self.nrows = stop - self.row0

    _file = None

    def read(self, start, stop):
        """Rows ``[start, stop)`` of the block (the file stays open until :meth:`close`)."""
        with reading(self.path):
            if self._file is None:
                self._file = _h5py().File(self.path, "r")
            ds = self._file[self.dataset]
            out = np.empty((stop - start, self.ncols), dtype=np.float64)
            if stop > start:
                sel = np.s_[self.row0 + start:self.row0 + stop]
                view = out if ds.ndim == 2 else out.reshape(-1)
                if ds.dtype == np.float64:
                    ds.read_direct(view, source_sel=sel)
                else:
                    view[...] = ds[sel]
        return out

    def read_all(self):
        try:
            return super().read_all()
        finally:
            self.close()

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None

    def describe_row(self, row: int) -> str:
        return f"{self.path}:{self.dataset}, row {self.row0 + row}"
