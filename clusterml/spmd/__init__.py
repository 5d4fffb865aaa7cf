"""The engine side: runtime, inputs and the daal4py-style algorithm objects.

Everything here runs SPMD: under ``mpiexec``/``srun``, or on ipyparallel
engines driven by :mod:`clusterml.client`.

The names below are loaded on first use (PEP 562): importing this package
imports neither mpi4py nor the compiled kernels (numba, scipy), so a notebook
client and an engine that is still registering stay light.  Asking for
:data:`REGISTRY` loads every algorithm (each registers itself on import).
"""

from __future__ import annotations

import importlib
import sys
import types

#: Submodule of each public name.
_WHERE = {
    "REGISTRY": "algorithm", "Algorithm": "algorithm", "Result": "algorithm",
    "daalfini": "comm", "daalinit": "comm", "fini": "comm", "init": "comm",
    "my_procid": "comm", "num_procs": "comm",
    "Partition": "inputs", "read_partition": "inputs", "read_csv": "inputs", "read_hdf5": "inputs",
    "kmeans": "kmeans", "kmeans_init": "kmeans",
    "covariance": "moments", "low_order_moments": "moments",
    "pca": "decomposition", "pca_transform": "decomposition", "svd": "decomposition",
    "linear_regression_prediction": "linear_model", "linear_regression_training": "linear_model",
    "ridge_regression_prediction": "linear_model", "ridge_regression_training": "linear_model",
    "multinomial_naive_bayes_prediction": "naive_bayes",
    "multinomial_naive_bayes_training": "naive_bayes",
    "qr": "qr", "dbscan": "dbscan",
}
#: The public names (one list: the keys above).
__all__ = list(_WHERE)
#: The modules that register algorithms.
ALGORITHM_MODULES = tuple(dict.fromkeys(m for m in _WHERE.values()
                                        if m not in ("algorithm", "comm", "inputs")))


def load_algorithms() -> dict:
    """Import every algorithm module (they register themselves); return the registry."""
    for mod in ALGORITHM_MODULES:
        module = importlib.import_module(f"{__name__}.{mod}")
        for name, where in _WHERE.items():
            if where == mod:
                globals()[name] = getattr(module, name)
    from .algorithm import REGISTRY

    globals()["REGISTRY"] = REGISTRY
    return REGISTRY


def __getattr__(name):
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if name == "REGISTRY":
        return load_algorithms()
    value = getattr(importlib.import_module(f"{__name__}.{where}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    # ``kmeans`` names both a submodule and the algorithm.  Importing the submodule binds the
    # module object on the package; the public name must stay the algorithm, as it was when
    # this package imported everything eagerly.
    def __setattr__(self, name, value):
        if isinstance(value, types.ModuleType) and name in _WHERE:
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
