"""Out of core: a rank's table read in blocks, and algorithms run over the blocks.

A file larger than :attr:`~clusterml.spmd.readers.InputSettings.block_bytes`
reaches an algorithm that declares ``_streams = True`` as a :class:`Stream`.
One-pass algorithms wrap their kernel's ``partial`` with :func:`streamed`:
the partial of each block is merged into the running total with the kernel's
own (associative) ``merge``, exactly as partials of ranks are merged, so the
result equals the in-memory one while at most one block (of every table,
aligned by rows) is held at a time.  Per-row outputs (predictions) are made
block by block with :func:`stream_map`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np

from .readers import settings

__all__ = ["Stream", "block_rows_for", "is_stream", "iter_aligned", "stream_map", "streamed"]


class Stream:
    """This rank's rows of a file, read block by block.

    Attributes
    ----------
    source : clusterml.spmd.readers.Source
    name : str
        The input's name (for messages).
    shape : tuple of int
        ``(rows, columns)``; rows of a CSV file are known after a first pass.
    """

    ndim = 2

    def __init__(self, source, name: str = "data"):
        self.source, self.name = source, name

    @property
    def shape(self):
        return (int(self.source.nrows or 0), int(self.source.ncols))

    def __len__(self):
        return self.shape[0]

    def blocks(self, rows: int | None = None):
        """Yield float64 blocks of at most ``rows`` rows (default: ``block_bytes``), in order."""
        rows = rows or block_rows_for(self.shape[1])
        src = self.source
        try:
            if hasattr(src, "blocks"):
                yield from src.blocks(rows)
                return
            for a in range(0, int(src.nrows), rows):
                yield src.read(a, min(a + rows, int(src.nrows)))
        finally:
            if hasattr(src, "close"):
                src.close()

    def __getitem__(self, key):
        """Rows by a slice (one read) or by integer positions (one read per row, in order)."""
        n = self.shape[0]
        if isinstance(key, slice):
            a, b, step = key.indices(n)
            if step != 1:
                raise IndexError("a Stream is read in contiguous row ranges only")
            return self.source.read(a, max(a, b))
        idx = np.asarray(key, dtype=np.int64).reshape(-1)
        out = np.empty((len(idx), self.shape[1]))
        for i in np.argsort(idx, kind="stable"):
            j = int(idx[i]) + (n if idx[i] < 0 else 0)
            out[i] = self.source.read(j, j + 1)[0]
        return out

    def materialize(self) -> np.ndarray:
        """The whole block in memory (for algorithms that do not stream)."""
        return np.vstack(list(self.blocks(block_rows_for(self.shape[1])))) if self.shape[0] else \
            np.empty((0, self.shape[1]))


def is_stream(x) -> bool:
    return isinstance(x, Stream)


def block_rows_for(ncols: int) -> int:
    """Rows per block so that the float64 block of ``ncols`` columns fits ``block_bytes``."""
    return max(1, int(settings.block_bytes) // (8 * max(1, int(ncols))))


def _is_table(x, n) -> bool:
    return isinstance(x, Stream) or (hasattr(x, "shape") and getattr(x, "ndim", 0) == 2
                                      and x.shape[0] == n)


def iter_aligned(arrays: dict, rows: int | None = None, check_rows: bool = False):
    """Yield ``(row0, {name: block})`` over the same row ranges of every table.

    Tables may be ndarrays, sparse CSR arrays or :class:`Stream` s; None
    entries (an empty rank's unknown tables) are left out.
    """
    tabs = {k: v for k, v in arrays.items() if v is not None}
    if rows is None:
        rows = block_rows_for(sum(v.shape[1] for v in tabs.values()))
    gens = {k: v.blocks(rows) for k, v in tabs.items() if isinstance(v, Stream)}
    row0 = 0
    while True:
        got = {k: next(g, None) for k, g in gens.items()}
        if any(b is None or not len(b) for b in got.values()):
            for g in gens.values():
                g.close()
            return
        m = len(next(iter(got.values())))
        blocks = {k: (got[k] if k in got else v[row0:row0 + m]) for k, v in tabs.items()}
        del got
        yield row0, blocks
        del blocks  # before the next block is read: one block in memory at a time
        row0 += m


#: First row of the block being computed, within the rank's input (errors name the user's row).
_BLOCK_ROW0 = [0]


@contextlib.contextmanager
def rows_from(row0: int):
    """Within this block, local row r is row ``row0 + r`` of the rank's input (streaming)."""
    saved = _BLOCK_ROW0[0]
    _BLOCK_ROW0[0] = row0
    try:
        yield
    finally:
        _BLOCK_ROW0[0] = saved


def streamed(partial: Callable, merge: Callable) -> Callable:
    """``partial(*tables, **kw)`` computed block by block and merged when a table is a Stream.

    Positional arguments with as many rows as the Stream are cut into
    blocks; other arguments are passed as they are.
    """
    def run(*args, **kwargs):
        streams = [a for a in args if isinstance(a, Stream)]
        if not streams:
            return partial(*args, **kwargs)
        n = streams[0].shape[0]
        idx = [i for i, a in enumerate(args) if _is_table(a, n)]
        total = None
        for row0, blocks in iter_aligned({i: args[i] for i in idx}):
            call = list(args)
            for i in idx:
                call[i] = blocks.pop(i)
            del blocks
            with rows_from(row0):
                part = partial(*call, **kwargs)
            del call  # the block goes before the next one is read
            total = part if total is None else merge(total, part)
        if total is None:  # no rows
            call = [np.empty((0, a.shape[1])) if i in idx else a for i, a in enumerate(args)]
            total = partial(*call, **kwargs)
        return total

    run.__name__ = getattr(partial, "__name__", "partial")
    return run


def stream_map(fn: Callable) -> Callable:
    """``fn(X, *rest)`` (per-row outputs) computed block by block when ``X`` is a Stream.

    ``fn`` returns an array of per-row values or a dict of such arrays (or
    None entries); the blocks' outputs are concatenated.
    """

    def run(X, *args, **kwargs):
        if not isinstance(X, Stream):
            return fn(X, *args, **kwargs)
        n = X.shape[0]
        out, at = None, 0
        blocks = X.blocks()
        for B in blocks:
            part = fn(B, *args, **kwargs)
            parts = part if isinstance(part, dict) else {None: part}
            if out is None:  # the outputs are allocated once, whole (no concatenation copy)
                out = {k: None if v is None else np.empty((n,) + v.shape[1:], v.dtype)
                       for k, v in parts.items()}
            for k, v in parts.items():
                if v is not None:
                    out[k][at:at + len(B)] = v
            at += len(B)
            del B, part, parts  # before the next block is read
        if out is None:
            return fn(np.empty((0, X.shape[1])), *args, **kwargs)
        return out.get(None, out)

    return run
