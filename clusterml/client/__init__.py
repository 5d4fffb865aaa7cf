"""The notebook side of clusterml: :class:`Cluster` over ipyparallel MPI engines.

Only this package (and ``clusterml.launch``) imports ipyparallel.
"""

from ..spmd.comm import NestedUseError
from .cluster import Cluster, EngineArray, RemoteAlgorithm, list_clusters, stop_all
from .farm import TaskError
from .futures import TaskFuture
from .health import Health

__all__ = ["Cluster", "EngineArray", "RemoteAlgorithm", "Health", "list_clusters", "stop_all",
           "TaskError", "TaskFuture", "NestedUseError"]
