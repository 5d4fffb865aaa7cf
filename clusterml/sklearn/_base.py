"""What every clusterml estimator shares: the three ways of fitting, pickling, tags.

An estimator fits

- in one process on an array (``distributed=False, cluster=None``, the
  default): the input is validated as scikit-learn validates it and the
  clusterml algorithms run with ``distributed=False``;
- SPMD (``distributed=True``): every rank passes its own block (an array, a
  frame, a path with ``{}``, :func:`clusterml.read_partition`); the blocks
  are loaded and checked collectively and the algorithms run with
  ``distributed=True``, so every rank ends with the same fitted attributes;
- from a notebook (``cluster=``): the SPMD fit runs on the cluster's engines
  (see :mod:`clusterml.sklearn._engine`), the fitted attributes come back and
  per-row outputs stay on the engines as handles.

Subclasses implement ``_fit_arrays(ctx, X, y)`` on float64 blocks; this
module never sees MPI (``clusterml.spmd.comm`` does) nor ipyparallel (the
``cluster`` object does).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import _check_sample_weight

from ..spmd import comm
from ..spmd.inputs import Rows, load_tables
from ._data import _load_block, on_engines

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover - older scikit-learn
    def _validate_data(est, *args, **kwargs):
        return est._validate_data(*args, **kwargs)

__all__ = ["DistributedEstimator", "on_engines", "feature_names"]

#: Parameters every estimator adds to scikit-learn's.
COMMON_CONSTRAINTS = {"distributed": ["boolean"], "cluster": "no_validation"}


def feature_names(X):
    """Column names of a frame as scikit-learn keeps them (all strings), else None."""
    if isinstance(X, Rows):  # a scattered block (with its offset in the user's rows)
        X = X.values
    cols = getattr(X, "columns", None)
    if cols is None:
        return None
    names = [c for c in cols]
    if names and all(isinstance(c, str) for c in names):
        return np.asarray(names, dtype=object)
    return None


class DistributedEstimator(BaseEstimator):
    """Mixin of the three ways of fitting; subclasses define ``_fit_arrays``.

    Class attributes
    ----------------
    _supervised : bool
        ``fit(X, y)`` needs ``y``.
    _per_row_attrs : tuple of str
        Fitted attributes that hold one value per training row (``labels_``):
        local rows in SPMD mode, a handle on the engines with ``cluster=``.
    """

    _supervised = False
    _per_row_attrs: tuple = ()
    _y_numeric = True

    # -- fitting -----------------------------------------------------------
    def _fit(self, X, y=None, sample_weight=None):
        """Fit in the mode the parameters ask for.

        ``sample_weight`` (only for estimators whose ``fit`` takes it) reaches
        ``_fit_arrays`` as a keyword: float64 of shape (n_samples,) in one
        process, this rank's weights as given when ``distributed`` (the
        algorithm loads and checks them collectively).
        """
        self._validate_params()
        if self._supervised and y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None")
        weights = {} if sample_weight is None else {"sample_weight": sample_weight}
        if self.cluster is not None:
            if self.distributed:
                raise ValueError("pass either cluster=... (fit on a cluster's engines from here) "
                                 "or distributed=True (SPMD under mpiexec), not both")
            if weights:
                raise ValueError(f"{type(self).__name__}.fit: sample_weight is not supported with "
                                 f"cluster=...; fit with distributed=True under mpiexec, or in "
                                 f"one process")
            from ._remote import remote_fit

            return remote_fit(self, X, y)
        if self.distributed:
            ctx = comm.context(True)
            X, y, names, y_1d = self._load_spmd(ctx, X, y)
            self.n_features_in_ = X.shape[1]
            if names is not None:
                self.feature_names_in_ = names
            elif hasattr(self, "feature_names_in_"):
                del self.feature_names_in_
        else:
            ctx = comm.context(False)
            if self._supervised:
                X, y = _validate_data(self, X, y, dtype=np.float64, multi_output=True,
                                      y_numeric=self._y_numeric, reset=True)
                y_1d = np.ndim(y) == 1
            else:
                X = _validate_data(self, X, dtype=np.float64, reset=True)
                y_1d = True
            X = np.ascontiguousarray(X, dtype=np.float64)
            if weights:
                weights["sample_weight"] = _check_sample_weight(sample_weight, X, dtype=np.float64)
        self._fit_arrays(ctx, X, y, y_1d, **weights)
        return self

    def _load_spmd(self, ctx, X, y):
        """Load this rank's block(s) collectively; agree on names and on a 1-D target."""
        local = {"names": feature_names(X),
                 "y_1d": y is not None and (getattr(y, "ndim", 2) == 1 or on_engines(y))}
        specs = {"data": X}
        if self._supervised:
            specs["target"] = y
        arrays, _ = load_tables(ctx, specs)
        metas = ctx.allgather(lambda: (None if local["names"] is None else list(local["names"]),
                                       local["y_1d"]), step="feature names")
        names = next((np.asarray(m[0], dtype=object) for m in metas if m[0] is not None), None)
        y_arr = arrays.get("target")
        y_1d = all(m[1] for m in metas) and (y_arr is None or y_arr.shape[1] == 1)
        if y_arr is not None and y_1d:
            y_arr = y_arr[:, 0]
        return np.ascontiguousarray(arrays["data"]), y_arr, names, y_1d

    def _fit_arrays(self, ctx, X, y, y_1d):  # pragma: no cover - abstract
        raise NotImplementedError

    # -- per-row methods -----------------------------------------------------
    def _check_X(self, X):
        """Validate rows for a fitted estimator (feature count and names)."""
        X = _validate_data(self, X, dtype=np.float64, reset=False)
        return np.ascontiguousarray(X, dtype=np.float64)

    def _per_row(self, method: str, X):
        """Run ``method`` on engine rows (handle back) if ``X`` lives there, else return None."""
        if self.distributed and not on_engines(X) and hasattr(X, "__len__") and len(X) == 0:
            # a rank without rows: an empty block of the output's width
            return np.asarray(getattr(self, method)(np.zeros((1, self.n_features_in_))))[:0]
        if on_engines(X):
            if self.cluster is not None:
                from ._remote import remote_apply

                return remote_apply(self, method, X)
            if self.distributed:
                return getattr(self, method)(_load_block(X))
            raise ValueError(f"{type(self).__name__}.{method}: {X!r} names rows on engines or in "
                             f"files; fit with cluster=... (or distributed=True) to use it, or pass "
                             f"an array")
        return None

    # -- clone and pickling ----------------------------------------------------------
    def __sklearn_clone__(self):
        # scikit-learn deep-copies non-estimator parameters; a Cluster (a live
        # connection) is shared by the clone instead.
        cluster = self.cluster
        if cluster is None:
            return super().__sklearn_clone__()
        self.cluster = None
        try:
            new = super().__sklearn_clone__()
        finally:
            self.cluster = cluster
        new.cluster = cluster
        return new

    def __getstate__(self):
        state = super().__getstate__()
        if state.get("cluster") is not None:
            # A Cluster (a live connection) does not pickle: the copy predicts in-process.
            state = dict(state, cluster=None)
        return state


def total_rows(ctx, X) -> int:
    """Rows over all ranks (one small collective when distributed)."""
    return int(ctx.sum(lambda: len(X), step="row count"))
