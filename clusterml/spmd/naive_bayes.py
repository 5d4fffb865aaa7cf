"""Multinomial naive Bayes: training (one reduction) and per-rank prediction."""

from __future__ import annotations

import operator

import numpy as np

from ..errors import InputError, ParameterError
from ..kernels import naive_bayes as nb_k
from ..kernels import sparse as sparse_k
from ..kernels.blocks import iter_blocks
from ..kernels.sparse import nb_predict as sparse_predict
from .algorithm import Algorithm, Result, check_choice, check_int, check_memory, check_model_finite, register
from .blockwise import stream_map, streamed
from .inputs import OVERFLOW_LIMIT, check_finite, describe_row, is_sparse
from .moments import csr_kernel
from .streaming import Streaming, check_streaming

__all__ = ["multinomial_naive_bayes_training", "multinomial_naive_bayes_prediction"]

_EVALUATE = ("computeClassLabels", "computeClassProbabilities", "computeClassLogProbabilities")


def check_counts(X: np.ndarray, name: str = "data") -> None:
    """Raise InputError naming the first negative count of ``X``."""
    if is_sparse(X):
        neg = np.flatnonzero(X.data < 0)
        if neg.size:
            r = int(np.searchsorted(X.indptr, neg[0], side="right") - 1)
            raise InputError(f"{name}: {X.data[neg[0]]} at {describe_row(name, r)}, column "
                             f"{X.indices[neg[0]]}; multinomial naive Bayes needs non-negative counts")
        return
    offset = 0
    for B in iter_blocks(X):
        if B.size and B.min() < 0:
            r, c = np.argwhere(B < 0)[0]
            raise InputError(f"{name}: {B[r, c]} at {describe_row(name, int(offset + r))}, column "
                             f"{c}; multinomial naive Bayes needs non-negative counts")
        offset += B.shape[0]


def check_label_column(y: np.ndarray, name: str = "labels") -> None:
    """Raise InputError unless ``y`` has exactly one column."""
    if y.shape[1] != 1:
        raise InputError(f"{name}: expected one column of class labels, got {y.shape[1]} columns")


def check_labels(y: np.ndarray, n_classes: int, name: str = "labels") -> None:
    """Raise InputError unless ``y`` is one column of integers in ``[0, n_classes)``."""
    check_label_column(y, name)
    v = y[:, 0]
    bad = np.flatnonzero(v != np.floor(v))
    if bad.size:
        raise InputError(f"{name}: {v[bad[0]]:g} at {describe_row(name, int(bad[0]))} is not an "
                         f"integer class label; expected integers in [0, {n_classes})")
    bad = np.flatnonzero((v < 0) | (v >= n_classes))
    if bad.size:
        raise InputError(f"{name}: {v[bad[0]]:g} at {describe_row(name, int(bad[0]))} is outside "
                         f"[0, {n_classes}) "
                         f"(nClasses={n_classes})")


def _vector(name, value, what):
    try:
        v = np.asarray(value, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise ParameterError(f"{name}={value!r} must be a number or an array of numbers ({what})") from None
    if v.size == 0 or not np.all(np.isfinite(v)) or np.any(v <= 0):
        raise ParameterError(f"{name}={value!r} must hold finite numbers > 0 ({what})")
    return v


@register
class multinomial_naive_bayes_training(Streaming, Algorithm):
    """Multinomial naive Bayes for count data (daal4py's names).

    Parameters
    ----------
    nClasses : int
        Labels are integers in ``[0, nClasses)``.
    priorClassEstimates : array-like of shape (nClasses,) or (nClasses, 1), optional
        Class priors (> 0); default uniform ``1 / nClasses``.
    alpha : float or array-like of shape (p,) or (1, p), optional
        Additive smoothing per feature (> 0); default 1 for every feature.
    distributed : bool
    streaming : bool
        daal4py's online mode: ``compute(data, labels)`` per chunk, then
        ``finalize()``.

    Notes
    -----
    ``compute(data, labels)``: data (n x p) non-negative counts, labels
    (n x 1).  Result field ``model`` with ``LogP`` (nClasses x 1),
    ``LogTheta`` (nClasses x p), ``AuxTable`` (nClasses x p: the per-class
    feature totals ``N[c, j]``, as daal4py's), ``NFeatures`` (p, daal4py's
    name), ``NumberOfClasses`` and ``NumberOfFeatures`` (p).
    Equals scikit-learn's ``MultinomialNB(alpha, fit_prior=False)`` (or
    ``class_prior=priorClassEstimates``).

    Examples
    --------
    >>> import numpy as np, clusterml as cml
    >>> X = np.array([[5.0, 0.0], [4.0, 1.0], [0.0, 6.0], [1.0, 5.0]])
    >>> y = np.array([[0], [0], [1], [1]])
    >>> model = cml.multinomial_naive_bayes_training(2).compute(X, y).model
    >>> pred = cml.multinomial_naive_bayes_prediction(2).compute(np.array([[3.0, 0.0]]), model)
    >>> pred.prediction.ravel().tolist()
    [0.0]
    """

    _tables = ("data", "labels")
    # The counting kernel checks labels and counts (and finiteness) as it goes.
    _kernel_checks_finite = True

    def __init__(self, nClasses, priorClassEstimates=None, alpha=None, method="defaultDense",
                 fptype="double", distributed=False, streaming=False):
        super().__init__(distributed)
        self.streaming = check_streaming(streaming)
        self.nClasses = check_int("nClasses", nClasses, minimum=2)
        # the model is nClasses x features float64 (and the counts as much again)
        check_memory(f"nClasses={self.nClasses} (16 bytes per class and feature, at least)",
                     16.0 * self.nClasses)
        self.priorClassEstimates = priorClassEstimates
        self.alpha = alpha
        if priorClassEstimates is None:
            self._priors = np.full(self.nClasses, 1.0 / self.nClasses)
        else:
            self._priors = _vector("priorClassEstimates", priorClassEstimates, "one prior per class")
            if self._priors.size != self.nClasses:
                raise ParameterError(f"priorClassEstimates has {self._priors.size} values but "
                                     f"nClasses={self.nClasses}")
        self._alpha = None if alpha is None else _vector("alpha", alpha, "one value, or one per feature")
        self.method = check_choice("method", method, ("defaultDense", "fastCSR"))
        self.fptype = check_choice("fptype", fptype, ("double", "float"))

    def _local_check_fn(self, extras):
        def check(arrays):
            check_label_column(arrays["labels"])
        return check

    _accepts_sparse = True
    _streams = True

    def _partial(self, data, labels):
        check_memory(f"nClasses={self.nClasses} with {data.shape[1]} features",
                     16.0 * self.nClasses * max(1, data.shape[1]))
        if is_sparse(data):
            counts, ok = sparse_k.nb_partial(data, labels, self.nClasses)
        else:
            counts, ok = nb_k.partial(data, labels, self.nClasses, OVERFLOW_LIMIT)
        if not ok:
            # Search for the first problem, with the messages of the separate checks.
            check_finite(data, "data")
            check_finite(labels, "labels")
            check_labels(labels, self.nClasses)
            check_counts(data)
            raise InputError("data or labels: invalid values")  # pragma: no cover - unreachable
        return counts

    def _check_global(self, layout, extras, p=None):
        p = layout.ncols["data"] if p is None else p
        if self._alpha is not None and self._alpha.size not in (1, p):
            raise ParameterError(f"alpha has {self._alpha.size} values but the data has {p} features; "
                                 f"give one value or one per feature")

    def _compute(self, ctx, layout, data, labels):
        csr_kernel(self, data, None, None)
        counts = ctx.sum(streamed(self._partial, operator.add), data, labels,
                         step="naive bayes counts")
        return self._result(counts)

    def _stream_partial(self, data, labels):
        csr_kernel(self, data, None, None)
        return streamed(self._partial, operator.add)(data, labels)

    def _stream_merge(self, a, b):
        return a + b

    def _stream_result(self, ctx, total):
        self._check_global(None, {}, p=total.shape[1])
        return self._result(total)

    def _result(self, counts):
        p = counts.shape[1]
        alpha = np.ones(p) if self._alpha is None else np.broadcast_to(self._alpha, (p,)).copy()
        fields = nb_k.finalize(counts, alpha, self._priors)
        model = Result("multinomial_naive_bayes_model", LogP=fields["LogP"], LogTheta=fields["LogTheta"],
                       AuxTable=counts, NFeatures=p, NumberOfClasses=self.nClasses,
                       NumberOfFeatures=p)
        return Result("multinomial_naive_bayes_training_result", model=model)


@register
class multinomial_naive_bayes_prediction(Algorithm):
    """Classify this rank's rows with a multinomial naive Bayes model.

    Parameters
    ----------
    nClasses : int
        Must match the model.
    resultsToEvaluate : str
        ``'|'``-joined subset of ``computeClassLabels``,
        ``computeClassProbabilities``, ``computeClassLogProbabilities``.
    distributed : bool
        Each rank predicts its own rows; the only communication is the
        agreement on errors.

    Notes
    -----
    ``compute(data, model)``.  Result fields ``prediction`` (n_local x 1
    labels), ``probabilities`` and ``logProbabilities`` (n_local x nClasses);
    the ones not asked for are None.
    """

    _extras = ("model",)

    def __init__(self, nClasses, resultsToEvaluate="computeClassLabels", method="defaultDense",
                 fptype="double", distributed=False):
        super().__init__(distributed)
        self.nClasses = check_int("nClasses", nClasses, minimum=2)
        check_memory(f"nClasses={self.nClasses} (8 bytes per class and row, at least)",
                     8.0 * self.nClasses)
        if not isinstance(resultsToEvaluate, str):
            raise ParameterError(f"resultsToEvaluate={resultsToEvaluate!r} must be a string")
        flags = {f.strip() for f in resultsToEvaluate.split("|") if f.strip()}
        bad = sorted(flags - set(_EVALUATE))
        if bad or not flags:
            raise ParameterError(f"resultsToEvaluate={resultsToEvaluate!r}: expected any of "
                                 f"{', '.join(map(repr, _EVALUATE))} joined by '|'")
        self.resultsToEvaluate = resultsToEvaluate
        self._want = {f: f in flags for f in _EVALUATE}
        self.method = check_choice("method", method, ("defaultDense", "fastCSR"))
        self.fptype = check_choice("fptype", fptype, ("double", "float"))

    def _local_check_fn(self, extras):
        return lambda arrays: check_counts(arrays["data"])

    def _model(self, model, p):
        lp, lt = getattr(model, "LogP", None), getattr(model, "LogTheta", None)
        if lp is None or lt is None:
            raise ParameterError("multinomial_naive_bayes_prediction: model must be the .model of a "
                                 f"multinomial_naive_bayes_training result, got {type(model).__name__}")
        lp, lt = np.asarray(lp, dtype=np.float64), np.asarray(lt, dtype=np.float64)
        if lt.ndim != 2 or lp.size != lt.shape[0]:
            raise ParameterError(f"model: LogP has {lp.size} values and LogTheta shape {lt.shape}; "
                                 f"expected nClasses x 1 and nClasses x features")
        if lt.shape[0] != self.nClasses:
            raise ParameterError(f"nClasses={self.nClasses} but the model has {lt.shape[0]} classes")
        if lt.shape[1] != p:
            raise InputError(f"the model has {lt.shape[1]} features but the data has {p} columns")
        check_model_finite("model.LogP", lp)
        check_model_finite("model.LogTheta", lt)
        return lp.reshape(-1, 1), lt

    _accepts_sparse = True
    _streams = True

    def _compute(self, ctx, layout, data, model):
        csr_kernel(self, data, None, None)

        def local():
            lp, lt = self._model(model, layout.ncols["data"])
            want = dict(labels=self._want["computeClassLabels"],
                        probabilities=self._want["computeClassProbabilities"],
                        log_probabilities=self._want["computeClassLogProbabilities"])
            if is_sparse(data):
                return sparse_predict(data, lp, lt, **want)
            return stream_map(nb_k.predict)(data, lp, lt, dtype=self.dtype, **want)

        out = ctx.local(local, step="naive bayes prediction")
        return Result("multinomial_naive_bayes_prediction_result", **out)
