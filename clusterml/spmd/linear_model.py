"""Linear and ridge regression: training (one reduction) and per-rank prediction."""

from __future__ import annotations

import numpy as np

from ..errors import InputError, ParameterError
from ..kernels import linear_model as lm_k
from ..kernels import tsqr
from .algorithm import Algorithm, Result, check_choice, check_model_finite, checked_partial, register
from .blockwise import stream_map, streamed
from .streaming import Streaming, check_streaming

__all__ = ["linear_regression_training", "linear_regression_prediction",
           "ridge_regression_training", "ridge_regression_prediction"]


def _check_flag(name, value):
    if not isinstance(value, (bool, np.bool_)):
        raise ParameterError(f"{name}={value!r} must be True or False")
    return bool(value)


def _model(beta, p, intercept, kind):
    r = beta.shape[0]
    return Result(kind, Beta=beta, NumberOfBetas=p + 1, NumberOfResponses=r, NumberOfFeatures=p,
                  InterceptFlag=intercept)


def _gram_is_finite(g) -> bool:
    return bool(np.all(np.isfinite(g.mean)) and np.all(np.isfinite(np.diag(g.cp))))


def _r_is_finite(R) -> bool:
    return bool(np.all(np.isfinite(R)))


class _RegressionTraining(Streaming, Algorithm):
    _tables = ("data", "dependentVariables")
    _model_kind = "linear_regression_model"
    # NaN/inf turn the cross products (or R) non-finite: no separate pass over the data.
    _kernel_checks_finite = True

    @property
    def _streams(self):
        """Normal equations read a large file in blocks (one pass); qrDense does not."""
        return getattr(self, "method", "normEqDense") != "qrDense"

    def _fit(self, ctx, layout, data, dependentVariables, ridge=None):
        p = layout.ncols["data"]
        centred = self.interceptFlag
        names = ("data", "dependentVariables")
        if getattr(self, "method", "normEqDense") == "qrDense":
            Rs = ctx.allgather(checked_partial(lm_k.qr_partial, _r_is_finite, names=names),
                               data, dependentVariables, centred, step="regression tsqr")
            beta = ctx.bcast_from(0, lm_k.solve_qr, Rs, p, centred, step="regression solve")
        else:
            g = ctx.fold(streamed(checked_partial(lm_k.gram_partial, _gram_is_finite, names=names),
                                  lm_k.gram_merge), lm_k.gram_merge, data, dependentVariables, centred,
                         None, self.dtype,
                         step="regression cross products")
            beta = ctx.bcast_from(0, lm_k.solve_normal_equations, g, p, ridge, step="regression solve")
        return Result(self._result_kind, model=_model(beta, p, self.interceptFlag, self._model_kind))

    # -- streaming=True: the same partials, merged chunk by chunk ----------------
    def _qr_method(self) -> bool:
        return getattr(self, "method", "normEqDense") == "qrDense"

    def _stream_partial(self, data, dependentVariables):
        names = ("data", "dependentVariables")
        if self._qr_method():
            return checked_partial(lm_k.qr_partial, _r_is_finite, names=names)(
                data, dependentVariables, self.interceptFlag)
        return checked_partial(lm_k.gram_partial, _gram_is_finite, names=names)(
            data, dependentVariables, self.interceptFlag)

    def _stream_merge(self, a, b):
        if self._qr_method():
            return tsqr.stack_qr([a, b])
        return lm_k.gram_merge(a, b)

    def _stream_result(self, ctx, total):
        p = self._stream_ncols["data"]
        self._check_streamed(p)
        if self._qr_method():
            beta = ctx.bcast_from(0, lm_k.solve_qr, [total], p, self.interceptFlag,
                                  step="regression solve")
        else:
            ridge = getattr(self, "_lambda", None)
            beta = ctx.bcast_from(0, lm_k.solve_normal_equations, total, p, ridge,
                                  step="regression solve")
        return Result(self._result_kind, model=_model(beta, p, self.interceptFlag, self._model_kind))

    def _check_streamed(self, p):
        """The one-call path's global checks, on the rows of every chunk."""


@register
class linear_regression_training(_RegressionTraining):
    """Least-squares linear regression, one or several responses (daal4py's names).

    Parameters
    ----------
    method : {"normEqDense", "qrDense", "defaultDense"}
        ``normEqDense`` (= ``defaultDense``): one reduction of the cross
        products of ``[1, X, Y]``; error grows like ``cond(X)**2``.
        ``qrDense``: a TSQR of ``[1, X, Y]``; error grows like ``cond(X)``
        -- use it for ill-conditioned designs.
    interceptFlag : bool, default False
        Fit an intercept (``Beta[:, 0]``); otherwise ``Beta[:, 0] = 0``.
        False by default, as daal4py (measured on daal4py 2024.7 and 2026.2).
    distributed : bool
    streaming : bool
        daal4py's online mode: ``compute(data, dependentVariables)`` per
        chunk, then ``finalize()``.

    Notes
    -----
    ``compute(data, dependentVariables)``: data (n x p), responses (n x r).
    Needs at least p + 1 rows in total (p without an intercept).  The result
    has ``model`` with ``Beta`` (r x (p + 1), intercept in column 0),
    ``NumberOfBetas`` (p + 1), ``NumberOfResponses``, ``NumberOfFeatures``,
    ``InterceptFlag``.  The small final solve runs on rank 0 and is
    broadcast, so every rank holds the same bits even on mixed hardware.
    """

    _result_kind = "linear_regression_training_result"

    def __init__(self, method="normEqDense", interceptFlag=False, fptype="double", distributed=False,
                 streaming=False):
        super().__init__(distributed)
        self.streaming = check_streaming(streaming)
        self.method = check_choice("method", method, ("normEqDense", "qrDense", "defaultDense"))
        self.interceptFlag = _check_flag("interceptFlag", interceptFlag)
        self.fptype = check_choice("fptype", fptype, ("double", "float"))

    def _check_global(self, layout, extras):
        self._check_streamed(layout.ncols["data"], layout.total)

    def _check_streamed(self, p, total=None):
        total = self._stream_rows if total is None else total
        need = p + int(self.interceptFlag)
        if total < need:
            raise InputError(f"linear_regression_training with {p} features"
                             f"{' and an intercept' if self.interceptFlag else ''} needs at least "
                             f"{need} rows in total, got {total}")

    def _compute(self, ctx, layout, data, dependentVariables):
        return self._fit(ctx, layout, data, dependentVariables)


@register
class ridge_regression_training(_RegressionTraining):
    """Ridge regression: ``min ||Y - 1 b0 - X B||^2 + sum_r lambda_r ||B_r||^2`` (intercept not penalised).

    Matches scikit-learn's ``Ridge(alpha=ridgeParameters)`` (which centres X
    and y when fitting an intercept).

    Parameters
    ----------
    ridgeParameters : float or array-like of shape (r,) or (1, r)
        One value for every response, or one per response (>= 0).
    interceptFlag : bool, default False
        As daal4py; pass True for scikit-learn's default ``fit_intercept=True``.
    method : {"defaultDense"}
        Normal equations (one reduction of the cross products).
    distributed : bool
    streaming : bool
        ``compute(data, dependentVariables)`` per chunk, then ``finalize()``.
    """

    _result_kind = "ridge_regression_training_result"
    _model_kind = "ridge_regression_model"

    def __init__(self, ridgeParameters=1.0, interceptFlag=False, method="defaultDense", fptype="double",
                 distributed=False, streaming=False):
        super().__init__(distributed)
        self.streaming = check_streaming(streaming)
        try:
            lam = np.asarray(ridgeParameters, dtype=np.float64).ravel()
        except (TypeError, ValueError):
            raise ParameterError(f"ridgeParameters={ridgeParameters!r} must be a number or an array "
                                 f"of numbers (one per response)") from None
        if lam.size == 0 or not np.all(np.isfinite(lam)) or np.any(lam < 0):
            raise ParameterError(f"ridgeParameters={ridgeParameters!r} must be finite numbers >= 0 "
                                 f"(one, or one per response)")
        self.ridgeParameters = ridgeParameters
        self._lambda = lam
        self.interceptFlag = _check_flag("interceptFlag", interceptFlag)
        self.method = check_choice("method", method, ("defaultDense", "normEqDense"))
        self.fptype = check_choice("fptype", fptype, ("double", "float"))

    def _check_global(self, layout, extras):
        self._check_responses(layout.ncols["dependentVariables"])

    def _check_streamed(self, p):
        self._check_responses(self._stream_ncols["dependentVariables"])

    def _check_responses(self, r):
        if self._lambda.size not in (1, r):
            raise ParameterError(f"ridgeParameters has {self._lambda.size} values but there are {r} "
                                 f"responses; give one value or one per response")

    def _compute(self, ctx, layout, data, dependentVariables):
        return self._fit(ctx, layout, data, dependentVariables, ridge=self._lambda)


def check_linear_model(model, p: int, who: str) -> np.ndarray:
    """Return the model's Beta after checking it fits data with ``p`` features."""
    beta = getattr(model, "Beta", None)
    if beta is None:
        raise ParameterError(f"{who}: model must be the .model of a linear or ridge regression "
                             f"training result (with a Beta table), got {type(model).__name__}")
    beta = np.asarray(beta, dtype=np.float64)
    if beta.ndim != 2 or beta.shape[1] < 1:
        raise ParameterError(f"{who}: model.Beta must be responses x (features + 1), got shape "
                             f"{beta.shape}")
    if beta.shape[1] - 1 != p:
        raise InputError(f"{who}: the model has {beta.shape[1] - 1} features but the data has {p} "
                         f"columns")
    check_model_finite(f"{who}: model.Beta", beta)
    return beta


class _RegressionPrediction(Algorithm):
    _extras = ("model",)
    _streams = True

    def __init__(self, method="defaultDense", fptype="double", distributed=False):
        super().__init__(distributed)
        self.method = check_choice("method", method, ("defaultDense",))
        self.fptype = check_choice("fptype", fptype, ("double", "float"))

    def _compute(self, ctx, layout, data, model):
        who = type(self).__name__

        def local():
            # The model is checked inside the guarded step, so a model that
            # differs between ranks still raises everywhere.
            beta = check_linear_model(model, layout.ncols["data"], who)
            return stream_map(lm_k.predict)(data, beta, dtype=self.dtype)

        pred = ctx.local(local, step="regression prediction")
        return Result(self._result_kind, prediction=pred)


@register
class linear_regression_prediction(_RegressionPrediction):
    """Predict responses for this rank's rows: ``X Beta[:, 1:]^T + Beta[:, 0]``.

    ``compute(data, model)`` with the ``model`` of a training result; the
    result's ``prediction`` (n_local x responses) holds this rank's rows only.
    No communication except the agreement on errors.

    Parameters
    ----------
    method : {"defaultDense"}
    fptype : {"double", "float"}
        ``"float"``: the product in float32, a float32 ``prediction``.
    distributed : bool

    Examples
    --------
    >>> import numpy as np, clusterml as cml
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]])
    >>> y = 1.0 + 2.0 * X
    >>> model = cml.linear_regression_training(interceptFlag=True).compute(X, y).model
    >>> cml.linear_regression_prediction().compute(np.array([[10.0]]), model).prediction.round(6)
    array([[21.]])
    """

    _result_kind = "linear_regression_prediction_result"


@register
class ridge_regression_prediction(_RegressionPrediction):
    """Predict responses of a ridge model for this rank's rows (see linear_regression_prediction).

    Parameters
    ----------
    method : {"defaultDense"}
    fptype : {"double", "float"}
    distributed : bool
    """

    _result_kind = "ridge_regression_prediction_result"
