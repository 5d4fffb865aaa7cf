"""Test-only algorithms, imported on the client and on the engines of the facade tests.

They register in ``clusterml.spmd.REGISTRY`` like any landed algorithm, so the
facade drives them through exactly the same path.
"""

import time

import numpy as np

from clusterml.spmd.algorithm import Algorithm, Result, register


@register
class cmltest_noop(Algorithm):
    """Loads nothing and does nothing: the facade's own overhead per call."""

    _tables = ()

    def __init__(self, distributed=False):
        super().__init__(distributed)

    def compute(self):
        return Result("noop", ok=1)


@register
class cmltest_rank_result(Algorithm):
    """A result that depends on the rank (a broken algorithm): engines disagree."""

    def __init__(self, distributed=False):
        super().__init__(distributed)

    def _compute(self, ctx, layout, data):
        return Result("rank_result", value=np.array([[float(ctx.rank)]]), total=layout.total)


@register
class cmltest_sleep(Algorithm):
    """Sleeps on one rank (all ranks if rank=-1) outside any guarded step, then one collective."""

    def __init__(self, seconds=1.0, rank=0, distributed=False):
        super().__init__(distributed)
        self.seconds, self.rank = float(seconds), int(rank)

    def _compute(self, ctx, layout, data):
        if self.rank in (-1, ctx.rank):
            time.sleep(self.seconds)
        total = ctx.sum(lambda: np.array([float(layout.n_local)]), step="count")
        return Result("sleep", total=total)


@register
class cmltest_raise(Algorithm):
    """Raises an unguarded ValueError on one rank (no collective follows)."""

    def __init__(self, rank=0, distributed=False):
        super().__init__(distributed)
        self.rank = int(rank)

    def _compute(self, ctx, layout, data):
        if ctx.rank == self.rank:
            raise ValueError(f"boom on rank {ctx.rank}")
        return Result("raise", ok=1)


@register
class cmltest_rows(Algorithm):
    """A per-row output (declared with ``per_row_fields``) and a replicated one."""

    per_row_fields = ("doubled",)

    def __init__(self, distributed=False):
        super().__init__(distributed)

    def _compute(self, ctx, layout, data):
        return Result("rows", doubled=data * 2.0, total=np.array([[float(layout.total)]]))
