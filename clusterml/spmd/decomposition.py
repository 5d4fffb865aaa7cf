"""``pca``, ``pca_transform`` and ``svd``: kernels wired to a reduction and a broadcast.

The small dense factorisations (eigendecomposition, QR of the stacked R
factors, SVD of R) run on rank 0 and are broadcast: LAPACK may round
differently on different CPU models or thread counts, and every rank must
hold the same bits.
"""

from __future__ import annotations

import functools

import numpy as np

from ..errors import InputError, ParameterError
from ..kernels import covariance as cov_k
from ..kernels import moments as mom_k
from ..kernels import pca as pca_k
from ..kernels import svd as svd_k
from ..kernels import tsqr
from ..kernels.blocks import iter_blocks
from .algorithm import Algorithm, Result, check_choice, check_int, register, require_rows
from .blockwise import stream_map, streamed
from .streaming import Streaming, check_streaming, finalize_tsqr

__all__ = ["pca", "pca_transform", "svd"]


def _flag(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise ParameterError(f"{name}={value!r} must be True or False")
    return bool(value)


@register
class pca(Streaming, Algorithm):
    """Principal component analysis on the correlation matrix (daal4py's names).

    Parameters
    ----------
    method : {"correlationDense", "defaultDense", "svdDense"}
        ``correlationDense`` (= ``defaultDense``): eigendecomposition of the
        correlation matrix from one reduction of centred cross products.
        ``svdDense``: one moments reduction to standardise the rows, then a
        TSQR of the standardised rows and the SVD of its R factor
        (eigenvalues ``s**2 / (n - 1)``).  Both give the eigenpairs of the
        correlation matrix.
    nComponents : int
        Leading components to return; 0 returns all p.
    isDeterministic : bool
        Fix the signs: each eigenvector's largest-magnitude entry is positive.
    resultsToCompute : str
        ``'|'``-joined subset of ``mean``, ``variance``, ``eigenvalue``: the
        entries of ``dataForTransform`` (centring, normalisation, whitening
        in :class:`pca_transform`).  ``means`` and ``variances`` are always
        returned.
    distributed : bool
    streaming : bool
        daal4py's online mode: ``compute(chunk)`` repeatedly, then
        ``finalize()``.  ``svdDense`` then merges per-chunk (count, mean, R
        of the centred rows) triples (the TSQR analogue of Chan's update),
        still one pass and no normal equations.

    Notes
    -----
    Result fields: ``eigenvalues`` (1 x k, descending), ``eigenvectors``
    (k x p, one component per row), ``means`` and ``variances`` (1 x p,
    variance divided by n - 1), ``dataForTransform`` (dict).  Needs at least
    2 rows in total.

    Examples
    --------
    >>> import numpy as np, clusterml as cml
    >>> X = np.random.default_rng(0).normal(size=(100, 3))
    >>> res = cml.pca(method="svdDense", isDeterministic=True).compute(X)
    >>> res.eigenvectors.shape, bool(np.all(np.diff(res.eigenvalues) <= 0))
    ((3, 3), True)
    """

    def __init__(self, method="correlationDense", nComponents=0, isDeterministic=False,
                 resultsToCompute="mean|variance|eigenvalue", fptype="double", distributed=False,
                 streaming=False):
        super().__init__(distributed)
        self.streaming = check_streaming(streaming)
        self.method = check_choice("method", method, ("correlationDense", "defaultDense", "svdDense"))
        self.nComponents = check_int("nComponents", nComponents, minimum=0)
        self.isDeterministic = _flag("isDeterministic", isDeterministic)
        try:
            self._flags = pca_k.parse_results(resultsToCompute)
        except (TypeError, ValueError) as exc:
            raise ParameterError(str(exc)) from None
        self.resultsToCompute = resultsToCompute
        self.fptype = check_choice("fptype", fptype, ("double", "float"))

    @property
    def _streams(self):
        """The correlation method reads a large file in blocks (one pass); svdDense does not."""
        return self.method != "svdDense"

    def _check_global(self, layout, extras):
        require_rows(layout, 2, "pca")
        self._check_components(layout.ncols["data"])

    def _check_components(self, p):
        if self.nComponents > p:
            raise ParameterError(f"nComponents={self.nComponents} but the data has only {p} columns")

    def _compute(self, ctx, layout, data):
        opts = (self.nComponents, self.isDeterministic, self._flags)
        if self.method == "svdDense":
            m = ctx.fold(mom_k.partial, mom_k.merge, data, step="pca moments")
            mean, scale, variance = pca_k.standardiser(m)
            Rs = ctx.allgather(lambda: tsqr.local_r(pca_k.standardised_blocks(data, mean, scale),
                                                    data.shape[1]), step="pca tsqr")
            fields = ctx.bcast_from(0, pca_k.from_r_factors, Rs, m.n, mean, variance, *opts,
                                    step="pca svd")
        else:
            cp = ctx.fold(streamed(functools.partial(cov_k.partial, dtype=self.dtype), cov_k.merge),
                          cov_k.merge, data,
                          step="pca cross products")
            fields = ctx.bcast_from(0, pca_k.from_crossproducts, cp, *opts, step="pca eigen")
        return Result("pca_result", **fields)

    def _stream_partial(self, data):
        if self.method != "svdDense":
            return cov_k.partial(data)
        return pca_k.centred_r_partial(data)

    def _stream_merge(self, a, b):
        if self.method != "svdDense":
            return cov_k.merge(a, b)
        return pca_k.centred_r_merge(a, b)

    def _stream_result(self, ctx, total):
        if self._stream_rows < 2:
            raise InputError(f"pca needs at least 2 rows in total, got {self._stream_rows}")
        self._check_components(self._stream_ncols["data"])
        opts = (self.nComponents, self.isDeterministic, self._flags)
        if self.method != "svdDense":
            fields = ctx.bcast_from(0, pca_k.from_crossproducts, total, *opts, step="pca eigen")
        else:
            fields = ctx.bcast_from(0, pca_k.from_centred_r, total, *opts, step="pca svd")
        return Result("pca_result", **fields)


@register
class pca_transform(Algorithm):
    """Project this rank's rows on principal components (oneDAL's PCA transform).

    ``compute(data, eigenvectors, dataForTransform=None)``: ``eigenvectors``
    is the k x p table of a :class:`pca` result (or the result itself, whose
    ``dataForTransform`` is then used unless one is given);
    ``dataForTransform`` is a dict with optional ``mean``, ``variance``
    (1 x p) and ``eigenvalue`` (1 x >= nComponents): centring, normalisation
    and whitening are applied for the entries present.

    Parameters
    ----------
    nComponents : int
        Components to keep (0: all rows of ``eigenvectors``).
    distributed : bool
        Each rank transforms its own rows; the only communication is the
        agreement on errors.

    Notes
    -----
    Result field ``transformedData``: n_local x nComponents.
    """

    _extras = ("eigenvectors", "dataForTransform")
    # this rank's rows: the facade keeps them on the engines (they differ by design)
    per_row_fields = ("transformedData",)

    def __init__(self, nComponents=0, method="defaultDense", fptype="double", distributed=False):
        super().__init__(distributed)
        self.nComponents = check_int("nComponents", nComponents, minimum=0)
        self.method = check_choice("method", method, ("defaultDense", "correlationDense", "svdDense"))
        self.fptype = check_choice("fptype", fptype, ("double", "float"))

    def _inputs(self, p, eigenvectors, dataForTransform):
        if isinstance(eigenvectors, Result):
            if dataForTransform is None:
                dataForTransform = getattr(eigenvectors, "dataForTransform", None)
            eigenvectors = getattr(eigenvectors, "eigenvectors", None)
        if eigenvectors is None:
            raise ParameterError("pca_transform needs eigenvectors (a pca result or its "
                                 "k x p eigenvectors table)")
        T = np.asarray(eigenvectors, dtype=np.float64)
        if T.ndim != 2 or T.shape[1] != p:
            raise InputError(f"pca_transform: eigenvectors have shape {T.shape} but the data has {p} "
                             f"columns; expected k x {p}")
        k = self.nComponents or T.shape[0]
        if k > T.shape[0]:
            raise ParameterError(f"nComponents={k} but only {T.shape[0]} eigenvectors were given")
        extra = {}
        for key, size in (("mean", p), ("variance", p), ("eigenvalue", k)):
            v = (dataForTransform or {}).get(key)
            if v is None:
                continue
            v = np.asarray(v, dtype=np.float64).ravel()
            if v.size < size or (key != "eigenvalue" and v.size != size):
                raise InputError(f"pca_transform: dataForTransform[{key!r}] has {v.size} values, "
                                 f"expected {size}{' or more' if key == 'eigenvalue' else ''}")
            extra[key] = v
        return T, k, extra

    _streams = True

    def _compute(self, ctx, layout, data, eigenvectors, dataForTransform):
        def local():
            T, k, extra = self._inputs(layout.ncols["data"], eigenvectors, dataForTransform)
            return stream_map(pca_k.transform)(data, T, k, dtype=self.dtype, **extra)

        out = ctx.local(local, step="pca transform")
        return Result("pca_transform_result", transformedData=out)


@register
class svd(Streaming, Algorithm):
    """Singular value decomposition of the row-distributed data, through TSQR.

    Parameters
    ----------
    leftSingularMatrix : {"requiredInPackedForm", "notRequired"}
        Whether to compute this rank's rows of U.
    rightSingularMatrix : {"requiredInPackedForm", "notRequired"}
    distributed : bool
    streaming : bool
        daal4py's online mode: ``compute(chunk)`` repeatedly, then
        ``finalize()``; ``leftSingularMatrix`` then holds this rank's rows of
        every chunk, in order (each chunk's Q factors are kept until then).

    Notes
    -----
    Result fields: ``singularValues`` (1 x p, descending),
    ``rightSingularMatrix`` (p x p; rows are the right singular vectors,
    i.e. ``V^T`` as in daal4py and ``numpy.linalg.svd``), the same on every
    rank; ``leftSingularMatrix`` (n_local x p): this rank's rows of U, or
    None when not required.  Needs at least p rows in total.  U is formed
    from the kept Q factors, not as ``X V / s`` (see
    :func:`clusterml.kernels.tsqr.local_qr`): orthonormal to working
    precision on ill-conditioned data, and no division by zero singular
    values.

    Examples
    --------
    >>> import numpy as np, clusterml as cml
    >>> X = np.random.default_rng(1).normal(size=(50, 4))
    >>> res = cml.svd().compute(X)
    >>> np.allclose(res.singularValues, np.linalg.svd(X, compute_uv=False))
    True
    >>> res.leftSingularMatrix.shape
    (50, 4)
    """

    def __init__(self, method="defaultDense", leftSingularMatrix="requiredInPackedForm",
                 rightSingularMatrix="requiredInPackedForm", fptype="double", distributed=False,
                 streaming=False):
        super().__init__(distributed)
        self.streaming = check_streaming(streaming)
        choices = ("requiredInPackedForm", "notRequired")
        self.method = check_choice("method", method, ("defaultDense",))
        self.leftSingularMatrix = check_choice("leftSingularMatrix", leftSingularMatrix, choices)
        self.rightSingularMatrix = check_choice("rightSingularMatrix", rightSingularMatrix, choices)
        self.fptype = check_choice("fptype", fptype, ("double", "float"))

    def _check_global(self, layout, extras):
        p = layout.ncols["data"]
        require_rows(layout, p, f"svd of data with {p} columns")

    def _compute(self, ctx, layout, data):
        p = data.shape[1]
        want_u = self.leftSingularMatrix != "notRequired"
        if want_u:
            box = {}

            def local():
                box["qr"] = tsqr.local_qr(iter_blocks(data), p, n_rows=len(data), dtype=self.dtype)
                return box["qr"].r

            Rs = ctx.allgather(local, step="svd tsqr")
        else:
            Rs = ctx.allgather(lambda: tsqr.local_r(iter_blocks(data, tsqr.block_rows(p)), p),
                               step="svd tsqr")
        fin = ctx.bcast_from(0, svd_k.finalize, Rs, want_u, step="svd of R")
        U = None
        if want_u:
            U = ctx.local(tsqr.apply_q, box["qr"], fin["u_factors"][ctx.rank],
                              step="svd left singular vectors")
        V = fin["rightSingularMatrix"] if self.rightSingularMatrix != "notRequired" else None
        return Result("svd_result", singularValues=fin["singularValues"], rightSingularMatrix=V,
                      leftSingularMatrix=U)

    def _want_u(self):
        return self.leftSingularMatrix != "notRequired"

    def _stream_partial(self, data):
        p = data.shape[1]
        if self._want_u():
            return [tsqr.local_qr(iter_blocks(data), p, n_rows=len(data))]
        return tsqr.local_r(iter_blocks(data, tsqr.block_rows(p)), p)

    def _stream_merge(self, a, b):
        return a + b if self._want_u() else tsqr.stack_qr([a, b])

    def _stream_finalize(self, ctx):
        p = self._stream_ncols["data"]
        if self._stream_rows < p:
            raise InputError(f"svd of data with {p} columns needs at least {p} rows in total, "
                             f"got {self._stream_rows}")
        U = None
        if self._want_u():
            def finish(Rs):
                fin = svd_k.finalize(Rs, True)
                fin["factors"] = fin.pop("u_factors")
                return fin

            fin, U = finalize_tsqr(ctx, self._acc, finish, step="svd tsqr")
        else:
            acc = self._acc
            Rs = ctx.allgather(lambda: acc, step="svd tsqr")
            fin = ctx.bcast_from(0, svd_k.finalize, Rs, False, step="svd of R")
        V = fin["rightSingularMatrix"] if self.rightSingularMatrix != "notRequired" else None
        return Result("svd_result", singularValues=fin["singularValues"], rightSingularMatrix=V,
                      leftSingularMatrix=U)
