"""The notebook side of ``cluster=``: fit on the engines, keep per-row outputs there.

Only the public :class:`clusterml.Cluster` API is used: ``cluster.apply`` to
make the two engine-side algorithms known on the engines, then
``cluster.sklearn_fit(...).compute(...)`` / ``cluster.sklearn_apply(...)``,
which scatter notebook arrays, resolve paths and ``%%px`` names, check that
every engine returned the same result, and keep per-row outputs on the
engines as handles (``.gather()`` fetches them).
"""

from __future__ import annotations

from ..errors import ComputeError
from . import _engine

# scikit-learn's exceptions, raised alike on every engine, are raised here as themselves.
_PLAIN = {"ValueError": ValueError, "TypeError": TypeError, "InvalidParameterError": ValueError,
          "NotFittedError": ValueError}


def _run(call):
    try:
        return call()
    except ComputeError as err:
        kinds = {(etype, msg) for etype, msg, _ in err.causes.values()}
        if len(kinds) == 1:
            etype, msg = kinds.pop()
            if etype in _PLAIN:
                raise _PLAIN[etype](msg) from err
        raise

__all__ = ["remote_fit", "remote_apply"]

def _install(cluster) -> None:
    # Every time (one small round trip): a restarted engine set has forgotten them.
    _engine.install()
    cluster.apply(_engine.install)


def _params(est) -> dict:
    params = est.get_params(deep=False)
    params.pop("cluster", None)
    params.pop("distributed", None)
    return params


def remote_fit(est, X, y=None):
    """Fit ``est`` SPMD on ``cluster``'s engines; copy the fitted attributes into ``est``.

    Per-row fitted attributes (``labels_``) become handles on the engines.
    """
    cluster = est.cluster
    _install(cluster)
    for k in [k for k in vars(est) if k.endswith("_") and not k.startswith("__")]:
        delattr(est, k)
    if est._supervised and y is None:
        raise ValueError(f"{type(est).__name__} requires y to be passed, but the target y is None")
    res = _run(lambda: cluster.sklearn_fit(type(est).__name__, _params(est)).compute(X, y))
    for k, v in _engine.restore_state(res.to_dict()).items():
        setattr(est, k, v)
    return est


def remote_apply(est, method: str, X):
    """``est.<method>`` on the rows ``X`` names on the engines; a handle to the output rows."""
    cluster = est.cluster
    _install(cluster)
    shipped = _engine.copy_without_cluster(est)
    return _run(lambda: cluster.sklearn_apply(method).compute(X, shipped).output)
