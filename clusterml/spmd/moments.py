"""``low_order_moments`` and ``covariance``: kernels wired to one gather-and-fold each."""

from __future__ import annotations

import functools

from ..errors import InputError
from ..kernels import covariance as cov_k
from ..kernels import moments as mom_k
from ..kernels import sparse as sparse_k
from .algorithm import Algorithm, Result, check_choice, checked_partial, register, require_rows
from .blockwise import streamed
from .inputs import is_sparse
from .streaming import Streaming, check_streaming

__all__ = ["low_order_moments", "covariance", "csr_kernel"]


def csr_kernel(algo, data, sparse_kernel, dense_kernel):
    """The kernel for ``data``: the CSR one for sparse rows (every rank alike, see
    load_tables); ``method="fastCSR"`` with dense rows is refused."""
    if is_sparse(data):
        return sparse_kernel
    if getattr(algo, "method", "") in ("fastCSR", "lloydCSR"):
        raise InputError(f"{type(algo).__name__}: method={algo.method!r} needs sparse CSR input "
                         f"(a scipy.sparse matrix or a .npz file); the data is dense")
    return dense_kernel


@register
class low_order_moments(Streaming, Algorithm):
    """Minimum, maximum, sums, mean, variance ... of every column (daal4py's names).

    Parameters
    ----------
    estimatesToCompute : {"estimatesAll", "estimatesMinMax", "estimatesMeanVariance"}
    method : {"defaultDense"}
        Accepted for daal4py compatibility.
    distributed : bool
        One collective computation over all ranks' rows.
    streaming : bool
        daal4py's online mode: ``compute(chunk)`` repeatedly, then
        ``finalize()`` (see :mod:`clusterml.spmd.streaming`).

    Examples
    --------
    >>> import numpy as np, clusterml as cml
    >>> res = cml.low_order_moments().compute(np.arange(6.0).reshape(3, 2))
    >>> res.mean
    array([[2., 3.]])
    """

    def __init__(self, estimatesToCompute="estimatesAll", method="defaultDense", fptype="double",
                 distributed=False, streaming=False):
        super().__init__(distributed)
        self.streaming = check_streaming(streaming)
        self.estimatesToCompute = check_choice("estimatesToCompute", estimatesToCompute, mom_k.ESTIMATES)
        self.method = check_choice("method", method, ("defaultDense", "fastCSR", "singlePassDense",
                                                      "sumDense"))
        self.fptype = check_choice("fptype", fptype, ("double", "float"))

    _kernel_checks_finite = True
    _accepts_sparse = True
    _streams = True

    def _partial(self, data):
        """This rank's partial of ``data``: the CSR or dense kernel, block by block for a large file."""
        kernel = csr_kernel(self, data, sparse_k.moments_partial, mom_k.partial)
        return streamed(checked_partial(kernel, mom_k.is_finite), mom_k.merge)

    def _compute(self, ctx, layout, data):
        total = ctx.fold(self._partial(data), mom_k.merge, data, step="moments")
        return Result("low_order_moments_result", **mom_k.finalize(total, self.estimatesToCompute))

    def _stream_partial(self, data):
        return self._partial(data)(data)

    def _stream_merge(self, a, b):
        return mom_k.merge(a, b)

    def _stream_result(self, ctx, total):
        return Result("low_order_moments_result", **mom_k.finalize(total, self.estimatesToCompute))


@register
class covariance(Streaming, Algorithm):
    """Covariance or correlation matrix and the mean of every column.

    Parameters
    ----------
    outputMatrixType : {"covarianceMatrix", "correlationMatrix"}
        Both matrices are returned; this says which one daal4py would fill.
    method : {"defaultDense"}
    distributed : bool
    streaming : bool
        ``compute(chunk)`` repeatedly, then ``finalize()``.

    Notes
    -----
    Covariance divides by n - 1, so at least 2 rows in total are needed
    (InputError otherwise, as for pca).  A constant column has correlation 0 with
    every other column and 1 with itself.

    Examples
    --------
    >>> import numpy as np, clusterml as cml
    >>> X = np.array([[1.0, 2.0], [2.0, 4.1], [3.0, 5.9], [4.0, 8.0]])
    >>> res = cml.covariance().compute(X)
    >>> res.covariance.round(3)
    array([[1.667, 3.3  ],
           [3.3  , 6.54 ]])
    >>> res.correlation.shape
    (2, 2)
    """

    def __init__(self, outputMatrixType="covarianceMatrix", method="defaultDense", fptype="double",
                 distributed=False, streaming=False):
        super().__init__(distributed)
        self.streaming = check_streaming(streaming)
        self.outputMatrixType = check_choice("outputMatrixType", outputMatrixType,
                                             ("covarianceMatrix", "correlationMatrix"))
        self.method = check_choice("method", method, ("defaultDense", "singlePassDense", "sumDense",
                                                      "fastCSR"))
        self.fptype = check_choice("fptype", fptype, ("double", "float"))

    _kernel_checks_finite = True
    _accepts_sparse = True
    _streams = True

    def _partial(self, data):
        """This rank's partial of ``data``: the CSR or dense kernel, block by block for a large file."""
        kernel = csr_kernel(self, data, sparse_k.cov_partial,
                            functools.partial(cov_k.partial, dtype=self.dtype))
        return streamed(checked_partial(kernel, cov_k.is_finite), cov_k.merge)

    def _check_global(self, layout, extras):
        # n - 1 = 0: every entry would be NaN; refuse as pca does
        require_rows(layout, 2, "covariance")

    def _compute(self, ctx, layout, data):
        total = ctx.fold(self._partial(data), cov_k.merge, data, step="covariance")
        return Result("covariance_result", **cov_k.finalize(total))

    def _stream_partial(self, data):
        return self._partial(data)(data)

    def _stream_merge(self, a, b):
        return cov_k.merge(a, b)

    def _stream_result(self, ctx, total):
        return Result("covariance_result", **cov_k.finalize(total))
