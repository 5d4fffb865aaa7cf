"""``qr``: distributed QR decomposition (TSQR), daal4py's names and fields."""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..kernels import qr as qr_k
from ..kernels.blocks import iter_blocks
from .algorithm import Algorithm, Result, check_choice, register, require_rows
from .streaming import Streaming, check_streaming, finalize_tsqr

__all__ = ["qr"]


@register
class qr(Streaming, Algorithm):
    """QR decomposition of the row-distributed data, ``data = Q R`` (daal4py's ``qr``).

    Parameters
    ----------
    method : {"defaultDense"}
    fptype : {"double", "float"}
        ``"float"``: the rows are rounded to float32 and factored in single
        precision throughout (float32 LAPACK and products, no float64
        accumulation); ``matrixQ`` and ``matrixR`` are float32.
    distributed : bool
        One collective decomposition of all ranks' rows stacked in rank order.
    streaming : bool
        daal4py's online mode: ``compute(chunk)`` repeatedly, then
        ``finalize()``; ``matrixQ`` holds this rank's rows of every chunk.

    Notes
    -----
    Result fields: ``matrixR`` (p x p, upper triangular with a non-negative
    diagonal), the same on every rank; ``matrixQ`` (n_local x p): this
    rank's rows of Q, so that stacking every rank's ``matrixQ @ matrixR``
    gives the data back and the stacked ``matrixQ`` has orthonormal columns.
    Q is formed from Householder factors (TSQR, see
    :mod:`clusterml.kernels.qr`), orthonormal to working precision at any
    conditioning.  Needs at least p rows in total.  Only p x p triangles
    cross the network.

    Examples
    --------
    >>> import numpy as np, clusterml as cml
    >>> X = np.arange(12.0).reshape(4, 3) ** 2
    >>> res = cml.qr().compute(X)
    >>> bool(np.allclose(res.matrixQ @ res.matrixR, X))
    True
    """

    # this rank's rows: the facade keeps them on the engines (they differ by design)
    per_row_fields = ("matrixQ",)

    def __init__(self, method="defaultDense", fptype="double", distributed=False, streaming=False):
        super().__init__(distributed)
        self.streaming = check_streaming(streaming)
        self.method = check_choice("method", method, ("defaultDense",))
        self.fptype = check_choice("fptype", fptype, ("double", "float"))

    def _check_global(self, layout, extras):
        p = layout.ncols["data"]
        require_rows(layout, p, f"qr of data with {p} columns")

    @property
    def _dtype(self):
        return np.float32 if self.fptype == "float" else np.float64

    def _local_qr(self, data):
        dt = self._dtype
        # a block at a time: the float32 copy never exists next to a second whole one
        blocks = (b.astype(dt) for b in iter_blocks(data)) if dt != data.dtype else iter_blocks(data)
        return qr_k.local_qr(blocks, data.shape[1], n_rows=len(data), dtype=dt)

    def _compute(self, ctx, layout, data):
        box = {}

        def local():
            box["qr"] = self._local_qr(data)
            return box["qr"].r

        Rs = ctx.allgather(local, step="qr tsqr")
        fin = ctx.bcast_from(0, qr_k.finalize, Rs, step="qr of stacked R")
        Q = ctx.local(qr_k.q_rows, box["qr"], fin["q_factors"][ctx.rank], step="qr matrixQ")
        return Result("qr_result", matrixQ=Q, matrixR=fin["matrixR"])

    def _stream_partial(self, data):
        return [self._local_qr(data)]

    def _stream_merge(self, a, b):
        return a + b

    def _stream_finalize(self, ctx):
        p = self._stream_ncols["data"]
        if self._stream_rows < p:
            raise InputError(f"qr of data with {p} columns needs at least {p} rows in total, "
                             f"got {self._stream_rows}")

        def finish(Rs):
            fin = qr_k.finalize(Rs)
            fin["factors"] = fin.pop("q_factors")
            return fin

        fin, Q = finalize_tsqr(ctx, self._acc, finish, step="qr tsqr")
        return Result("qr_result", matrixQ=Q, matrixR=fin["matrixR"])
