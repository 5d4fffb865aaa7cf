"""clusterml: distributed machine learning from a Jupyter notebook on an HPC cluster.

The engine side (``clusterml.spmd``) keeps daal4py's names, so a daal4py SPMD
script ports by changing its import::

    import clusterml as d4p
    d4p.daalinit()
    res = d4p.kmeans_init(10, method="plusPlusDense", distributed=True).compute(
        "file{}.csv")
    d4p.daalfini()

The notebook side is :class:`clusterml.Cluster`.  Importing clusterml never
initialises MPI; the first distributed computation (or :func:`init`) does.
"""

from ._version import __version__
from .errors import (
    ClusterStartError,
    ClusterTimeoutError,
    CollectiveTimeoutError,
    ComputeError,
    ControllerError,
    DistributedError,
    EngineError,
    InconsistentResultError,
    InputError,
    ParameterError,
)

# The engine API (init, the algorithms, read_partition) is loaded on first use (PEP 562):
# ``import clusterml`` in a notebook imports neither mpi4py nor numba, scipy or pandas.
from .spmd import __all__ as _SPMD_NAMES

__all__ = [
    "__version__", "DistributedError", "InputError", "ParameterError", "ComputeError",
    "InconsistentResultError", "EngineError", "ControllerError", "ClusterTimeoutError", "ClusterStartError",
    "CollectiveTimeoutError", "Cluster",
] + list(_SPMD_NAMES)


def __getattr__(name):
    if name in _SPMD_NAMES:
        from . import spmd

        value = getattr(spmd, name)
        globals()[name] = value
        return value
    # The notebook facade imports ipyparallel; load it only when asked for.
    if name == "Cluster":
        from .client import Cluster

        return Cluster
    if name == "load_ipython_extension":
        from .client.magics import load_ipython_extension

        return load_ipython_extension
    raise AttributeError(f"module 'clusterml' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
