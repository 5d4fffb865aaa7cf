"""scikit-learn estimators on clusterml's distributed algorithms (SPEC §7).

The same class fits in one process on an array (the default), SPMD under
``mpiexec`` on each rank's block with ``distributed=True`` (every rank ends
with the same fitted attributes), or on a notebook's cluster with
``cluster=`` (fitted attributes come back, per-row outputs stay on the
engines as handles)::

    from clusterml.sklearn import KMeans
    km = KMeans(8, cluster=cluster).fit("data/part{}.csv")
    km.cluster_centers_          # in the notebook
    km.labels_                   # a handle; km.labels_.gather() fetches the rows

See docs/sklearn.md.
"""

from .cluster import DBSCAN, KMeans
from .covariance import EmpiricalCovariance
from .decomposition import PCA
from .linear_model import LinearRegression, Ridge
from .naive_bayes import MultinomialNB
from .preprocessing import StandardScaler

__all__ = ["KMeans", "DBSCAN", "PCA", "LinearRegression", "Ridge", "MultinomialNB", "EmpiricalCovariance",
           "StandardScaler"]
