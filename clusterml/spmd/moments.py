"""``low_order_moments`` and ``covariance``: kernels wired to one gather-and-fold each."""

from __future__ import annotations

import functools

from ..kernels import covariance as cov_k
from ..kernels import moments as mom_k
from .algorithm import Algorithm, Result, check_choice, checked_partial, register

__all__ = ["low_order_moments", "covariance"]


@register
class low_order_moments(Algorithm):
    """Minimum, maximum, sums, mean, variance ... of every column (daal4py's names).

    Parameters
    ----------
    estimatesToCompute : {"estimatesAll", "estimatesMinMax", "estimatesMeanVariance"}
    method : {"defaultDense"}
        Accepted for daal4py compatibility.
    distributed : bool
        One collective computation over all ranks' rows.

    Examples
    --------
    >>> import numpy as np, clusterml as cml
    >>> res = cml.low_order_moments().compute(np.arange(6.0).reshape(3, 2))
    >>> res.mean
    array([[2., 3.]])
    """

    def __init__(self, estimatesToCompute="estimatesAll", method="defaultDense", fptype="double",
                 distributed=False):
        super().__init__(distributed)
        self.estimatesToCompute = check_choice("estimatesToCompute", estimatesToCompute, mom_k.ESTIMATES)
        self.method = check_choice("method", method, ("defaultDense", "fastCSR", "singlePassDense",
                                                      "sumDense"))
        self.fptype = check_choice("fptype", fptype, ("double", "float"))

    _kernel_checks_finite = True

    def _compute(self, ctx, layout, data):
        partial = checked_partial(mom_k.partial, mom_k.is_finite)
        total = ctx.fold(partial, mom_k.merge, data, step="moments")
        return Result("low_order_moments_result", **mom_k.finalize(total, self.estimatesToCompute))


@register
class covariance(Algorithm):
    """Covariance or correlation matrix and the mean of every column.

    Parameters
    ----------
    outputMatrixType : {"covarianceMatrix", "correlationMatrix"}
        Both matrices are returned; this says which one daal4py would fill.
    method : {"defaultDense"}
    distributed : bool

    Notes
    -----
    Covariance divides by n - 1.  A constant column has correlation 0 with
    every other column and 1 with itself.
    """

    def __init__(self, outputMatrixType="covarianceMatrix", method="defaultDense", fptype="double",
                 distributed=False):
        super().__init__(distributed)
        self.outputMatrixType = check_choice("outputMatrixType", outputMatrixType,
                                             ("covarianceMatrix", "correlationMatrix"))
        self.method = check_choice("method", method, ("defaultDense", "singlePassDense", "sumDense",
                                                      "fastCSR"))
        self.fptype = check_choice("fptype", fptype, ("double", "float"))

    _kernel_checks_finite = True

    def _compute(self, ctx, layout, data):
        partial = checked_partial(functools.partial(cov_k.partial, dtype=self.dtype), cov_k.is_finite)
        total = ctx.fold(partial, cov_k.merge, data, step="covariance")
        return Result("covariance_result", **cov_k.finalize(total))
