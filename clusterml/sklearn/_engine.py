"""The engine side of ``cluster=``: two algorithm objects the notebook facade can call.

``sklearn_fit`` builds the estimator on every engine with
``distributed=True`` and runs its SPMD ``fit`` on the engine's rows;
``sklearn_apply`` runs one per-row method (``predict``, ``transform``, ...)
of a fitted estimator on each engine's rows.  Both go through the facade's
ordinary path (``cluster.<name>(...).compute(...)``): inputs may be paths,
``cluster.scatter`` handles, ``%%px`` names or earlier per-row outputs;
errors come back naming the ranks; the results are checked identical on
every engine; per-row outputs stay on the engines.

They are added to :data:`clusterml.spmd.REGISTRY` by :func:`install` (on
the client before the first ``cluster=`` call, on the engines by
``cluster.apply(install)``), not on import, so importing
:mod:`clusterml.sklearn` leaves the list of daal4py-style algorithms as it is.
"""

from __future__ import annotations

import copy
import importlib

import numpy as np

from ..errors import ParameterError
from ..spmd import comm
from ..spmd.algorithm import REGISTRY, Algorithm, Result
from ._data import _load_block, on_engines

__all__ = ["sklearn_fit", "sklearn_apply", "install", "estimator_class", "fitted_state",
           "restore_state", "copy_without_cluster"]

#: Estimators that may be built on engines (module, class name).
ESTIMATORS = frozenset({"KMeans", "DBSCAN", "PCA", "LinearRegression", "Ridge", "MultinomialNB",
                        "EmpiricalCovariance", "StandardScaler"})
#: Fitted attributes that may hold one value per row (an estimator's ``_per_row_attrs``).
#: They travel under :data:`ROW_PREFIX` + name, so a per-row ``components_``
#: (DBSCAN's core rows) is not confused with a fitted ``components_`` (PCA's).
PER_ROW_ATTRS = ("labels_", "core_sample_indices_", "components_")
ROW_PREFIX = "rows__"
#: Per-row methods that may be run on engines.
METHODS = frozenset({"predict", "transform", "inverse_transform", "predict_proba",
                     "predict_log_proba", "fit_predict", "mahalanobis", "score_samples"})


def estimator_class(name: str):
    if name not in ESTIMATORS:
        raise ParameterError(f"estimator={name!r} is not one of {', '.join(sorted(ESTIMATORS))}")
    return getattr(importlib.import_module("clusterml.sklearn"), name)


def fitted_state(est) -> dict:
    """The fitted attributes of ``est`` (names ending in ``_``), in a form whose bytes compare.

    Object arrays (feature names) become tuples: their pickles hold no
    pointers, so the facade's check that every engine returned the same
    result compares the names themselves.
    """
    state = {}
    for k, v in vars(est).items():
        if not k.endswith("_") or k.startswith("__"):
            continue
        if isinstance(v, np.ndarray) and v.dtype == object:
            v = ("__object_array__", tuple(v.tolist()))
        state[k] = v
    return state


def copy_without_cluster(est):
    """A shallow copy of a fitted estimator to ship to engines (no Cluster, no handles)."""
    c = copy.copy(est)
    c.cluster = None
    for name in est._per_row_attrs:
        c.__dict__.pop(name, None)
    return c


def restore_state(state: dict) -> dict:
    """The fitted attributes from :func:`fitted_state` (or a ``sklearn_fit`` result's fields)."""
    out = {}
    for k, v in state.items():
        k = k.removeprefix(ROW_PREFIX)
        if isinstance(v, tuple) and len(v) == 2 and v[0] == "__object_array__":
            v = np.asarray(v[1], dtype=object)
        out[k] = v
    return out


class sklearn_fit(Algorithm):
    """Fit a :mod:`clusterml.sklearn` estimator SPMD on every rank's rows.

    Parameters
    ----------
    estimator : str
        Class name in :mod:`clusterml.sklearn`.
    params : dict
        Its parameters (without ``distributed`` and ``cluster``).
    distributed : bool

    Notes
    -----
    ``compute(data, target=None)``.  Result: the fitted attributes; those
    holding one value per row (the estimator's ``_per_row_attrs``, such as
    ``labels_``) are this rank's rows, named :data:`ROW_PREFIX` + attribute.
    """

    _tables = ("data", "target")
    per_row_fields = tuple(ROW_PREFIX + a for a in PER_ROW_ATTRS)

    def __init__(self, estimator, params, distributed=False):
        super().__init__(distributed)
        self.estimator = estimator
        self.params = dict(params)
        cls = estimator_class(estimator)
        self._est = cls(**self.params, distributed=bool(distributed))
        self._est._validate_params()

    def compute(self, data, target=None):
        est = self._est
        est.fit(data) if target is None else est.fit(data, target)
        rows = set(est._per_row_attrs)
        return Result("sklearn_fit_result", **{(ROW_PREFIX + k if k in rows else k): v
                                               for k, v in fitted_state(est).items()})


class sklearn_apply(Algorithm):
    """Run one per-row method of a fitted estimator on every rank's rows.

    Parameters
    ----------
    method : str
        ``predict``, ``transform``, ``predict_proba``, ...
    distributed : bool

    Notes
    -----
    ``compute(data, estimator)``: ``estimator`` is the fitted estimator (the
    same on every rank).  Result field ``output``: this rank's rows.  A rank
    without rows returns an empty block of the right width.
    """

    _tables = ("data",)
    _extras = ("estimator",)
    per_row_fields = ("output",)

    def __init__(self, method, distributed=False):
        super().__init__(distributed)
        if method not in METHODS:
            raise ParameterError(f"method={method!r} is not one of {', '.join(sorted(METHODS))}")
        self.method = method

    def compute(self, data, estimator=None):
        ctx = comm.context(self.distributed)

        def local():
            est = estimator
            if est is None or type(est).__name__ not in ESTIMATORS:
                raise ParameterError(f"sklearn_apply needs a fitted clusterml.sklearn estimator, "
                                     f"got {type(est).__name__}")
            X = _load_block(data) if on_engines(data) else data
            fn = getattr(est, self.method)
            if len(X) == 0:  # the output's width, from one row of zeros
                out = np.asarray(fn(np.zeros((1, est.n_features_in_))))
                return out[:0]
            return np.asarray(fn(X))

        out = ctx.local(local, step=f"{self.method} on this rank's rows")
        return Result("sklearn_apply_result", output=out)


def install() -> bool:
    """Make ``sklearn_fit`` / ``sklearn_apply`` callable through the facade (idempotent)."""
    REGISTRY.setdefault("sklearn_fit", sklearn_fit)
    REGISTRY.setdefault("sklearn_apply", sklearn_apply)
    return True
