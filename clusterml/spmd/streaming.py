"""``streaming=True``: daal4py's online mode, ``compute(chunk)`` any number of times, then ``finalize()``.

An algorithm that can stream mixes :class:`Streaming` in before
:class:`~clusterml.spmd.algorithm.Algorithm` and provides three hooks:

``_stream_partial(**arrays)``
    the kernel's partial result of one chunk of this rank's rows (pure, local);
``_stream_merge(a, b)``
    the kernel's merge of two partial results (associative);
``_stream_result(ctx, total)``
    the result from the partial of all the rows (may use collectives to
    broadcast a small factorisation, as the one-call path does).

Each ``compute(chunk)`` loads and checks the chunk exactly as a one-call
``compute`` does (collectively when ``distributed=True``: every rank calls
``compute`` the same number of times, with an empty chunk when it has no
more rows) and merges its partial into this rank's running partial; no
data crosses the network.  ``finalize()`` folds the ranks' running partials
in rank order (one collective) and returns the result, equal to one
``compute`` on all the rows.  Chunks keep being accepted after ``finalize``
(the running partial is kept), as in daal4py.
"""

from __future__ import annotations

import numpy as np

from ..errors import InputError, ParameterError
from . import comm
from .algorithm import as_fptype, bind_inputs
from .inputs import load_tables

__all__ = ["Streaming", "check_streaming"]


def check_streaming(value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise ParameterError(f"streaming={value!r} must be True or False")
    return bool(value)


class Streaming:
    """Mixin giving an algorithm daal4py's online mode (see the module docstring)."""

    streaming: bool = False
    _acc = None
    _stream_ncols = None
    _stream_rows = 0

    def compute(self, *args, **kwargs):
        """One call on all the rows, or (``streaming=True``) one more chunk of them."""
        if not self.streaming:
            return super().compute(*args, **kwargs)
        given = bind_inputs(type(self).__name__, self._tables, self._extras, args, kwargs)
        ctx = comm.context(self.distributed)
        tables = {n: given[n] for n in self._tables}
        extras = {n: given.get(n) for n in self._extras}
        arrays, layout = load_tables(ctx, tables, self._local_check_fn(extras),
                                     finite=not self._kernel_checks_finite)
        if self._stream_ncols is not None and layout.ncols != self._stream_ncols:
            # layout.ncols is the same on every rank: every rank raises alike
            raise InputError(f"{type(self).__name__}: this chunk has columns {layout.ncols} but "
                             f"the earlier chunks had {self._stream_ncols}")
        acc = self._acc

        def step():
            # partial and merge inside one guarded step: a failure on any rank raises on all
            part = self._stream_partial(**arrays)
            return part if acc is None else self._stream_merge(acc, part)

        self._acc = ctx.local(step, step=f"{type(self).__name__} chunk")
        self._stream_ncols = dict(layout.ncols)
        self._stream_rows += layout.total
        return None

    def finalize(self):
        """The result on all the chunks so far (collective when ``distributed=True``)."""
        if not self.streaming:
            raise ParameterError(f"{type(self).__name__}.finalize() is for streaming=True; "
                                 f"call compute(...) instead")
        if self._acc is None:
            raise ParameterError(f"{type(self).__name__}.finalize() before any compute(chunk)")
        ctx = comm.context(self.distributed)
        return as_fptype(self._stream_finalize(ctx), self.dtype)

    def _stream_finalize(self, ctx):
        acc = self._acc
        total = ctx.fold(lambda: acc, self._stream_merge, step=f"{type(self).__name__} finalize")
        return self._stream_result(ctx, total)

    # -- hooks --------------------------------------------------------------
    def _stream_partial(self, **arrays):  # pragma: no cover - abstract
        raise NotImplementedError

    def _stream_merge(self, a, b):  # pragma: no cover - abstract
        raise NotImplementedError

    def _stream_result(self, ctx, total):  # pragma: no cover - abstract
        raise NotImplementedError


def finalize_tsqr(ctx, parts: list, finish, step: str):
    """Finish a streamed TSQR whose chunks kept their Q factors (svd's U, qr's Q).

    ``parts`` are this rank's :class:`~clusterml.kernels.tsqr.LocalQR`, one per
    chunk; ``finish(Rs)`` (run on rank 0, broadcast) turns the ranks' R
    factors into a dict whose ``"factors"`` entry holds one q-factor per rank.
    Returns ``(fields, rows)``: ``finish``'s dict and this rank's rows of
    ``Q_local W`` over all its chunks, in chunk order.
    """
    from ..kernels import qr as qr_k

    R, split = qr_k.merge_local(parts)
    Rs = ctx.allgather(lambda: R, step=step)
    fields = ctx.bcast_from(0, finish, Rs, step=f"{step} finish")

    def rows():
        Ws = split(fields["factors"][ctx.rank])
        out = [qr_k.q_rows(lq, W) for lq, W in zip(parts, Ws, strict=True)]
        return np.vstack(out) if out else np.zeros((0, R.shape[1]))

    return fields, ctx.local(rows, step=f"{step} rows")
