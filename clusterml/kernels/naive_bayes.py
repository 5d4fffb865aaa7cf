"""Multinomial naive Bayes: per-class feature counts, the model, and prediction.

Training needs one reduction: the per-class sums of the (non-negative)
feature counts, ``N[c, j] = sum_{i: y_i = c} x_ij``, computed in one compiled
pass over the rows that also checks labels and counts.  On 1,000,000 x 32 with
one thread it takes 0.035 s; a one-hot GEMM per block took 0.098 s, and the
separate checks it needed read the data three more times (0.06 s).  With
smoothing ``alpha_j`` and class priors ``pi_c``::

    LogTheta[c, j] = log(N[c, j] + alpha_j) - log(sum_j N[c, j] + sum_j alpha_j)
    LogP[c]        = log(pi_c)

and a row ``x`` scores ``log p(c | x) = LogP[c] + x . LogTheta[c] - logsumexp``.

References
----------
A. McCallum, K. Nigam, "A comparison of event models for naive Bayes text
classification", AAAI-98 workshop on learning for text categorization, 1998.
C. D. Manning, P. Raghavan, H. Schütze, *Introduction to Information
Retrieval*, Cambridge University Press 2008, §13.2.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from .blocks import block_rows as _block_rows
from .blocks import iter_blocks
from .fused import class_sums
from .moments import as_plain

__all__ = ["partial", "finalize", "predict"]


def partial(X: np.ndarray, labels: np.ndarray, n_classes: int, limit: float = np.inf):
    """Per-class sums of the feature counts of this rank's rows, in one pass.

    Parameters
    ----------
    X : ndarray of shape (n_local, p), float32 or float64
        Non-negative counts, read in place; sums accumulate in float64.
    labels : ndarray of shape (n_local, 1) or (n_local,)
        Class labels, integers in ``[0, n_classes)``.
    n_classes : int
    limit : float
        Largest value accepted in ``X``.

    Returns
    -------
    counts : ndarray of shape (n_classes, p)
    ok : bool
        False when a label is not an integer in range or a value of ``X`` is
        negative, non-finite or above ``limit`` (``counts`` is then partial:
        the caller searches the data for a precise message).
    """
    y = np.asarray(labels)
    if y.dtype.kind != "f":
        y = y.astype(np.float64)
    # float32 or float64 rows are read as they are (no copy); sums accumulate in float64
    return class_sums(as_plain(X), as_plain(y.reshape(-1)), int(n_classes), float(limit))


def finalize(counts: np.ndarray, alpha: np.ndarray, priors: np.ndarray) -> dict:
    """The model's log-probability tables.

    Parameters
    ----------
    counts : ndarray of shape (n_classes, p)
        Merged over all rows.
    alpha : ndarray of shape (p,)
        Smoothing per feature (> 0).
    priors : ndarray of shape (n_classes,)
        Class priors (> 0).

    Returns
    -------
    dict
        ``LogP`` (n_classes x 1) and ``LogTheta`` (n_classes x p).
    """
    smoothed = counts + alpha
    log_theta = np.log(smoothed) - np.log(smoothed.sum(axis=1, keepdims=True))
    return {"LogP": np.log(priors).reshape(-1, 1), "LogTheta": log_theta}


def predict(X: np.ndarray, log_p: np.ndarray, log_theta: np.ndarray, labels: bool = True,
            probabilities: bool = False, log_probabilities: bool = False, block_rows=None,
            dtype=np.float64) -> dict:
    """Class labels and (log-)posteriors of this rank's rows, a block at a time.

    Parameters
    ----------
    X : ndarray of shape (n_local, p)
    log_p : ndarray of shape (n_classes, 1)
    log_theta : ndarray of shape (n_classes, p)
    labels, probabilities, log_probabilities : bool
        Which outputs to fill.
    dtype : {numpy.float64, numpy.float32}
        Precision of the products and outputs; a block of ``X`` of the other
        type is converted on its own.

    Returns
    -------
    dict
        ``prediction`` (n_local x 1, float labels), ``probabilities`` and
        ``logProbabilities`` (n_local x n_classes); None when not asked for.
    """
    n, c = X.shape[0], log_theta.shape[0]
    W = np.ascontiguousarray(log_theta.T, dtype=dtype)
    b = log_p.reshape(-1).astype(dtype)
    lab = np.empty((n, 1), dtype=dtype) if labels else None
    logprob = np.empty((n, c), dtype=dtype) if (probabilities or log_probabilities) else None
    row = 0
    for B in iter_blocks(X, block_rows or _block_rows(X.shape[1] + c)):
        m = B.shape[0]
        jll = (B if B.dtype == dtype else B.astype(dtype)) @ W
        jll += b
        if lab is not None:
            lab[row:row + m, 0] = np.argmax(jll, axis=1)
        if logprob is not None:
            logprob[row:row + m] = jll - logsumexp(jll, axis=1, keepdims=True)
        row += m
    return {
        "prediction": lab,
        "probabilities": np.exp(logprob) if probabilities else None,
        "logProbabilities": logprob if log_probabilities else None,
    }
