"""The engine side: runtime, inputs and the daal4py-style algorithm objects.

Everything here runs SPMD: under ``mpiexec``/``srun``, or on ipyparallel
engines driven by :mod:`clusterml.client`.
"""

from .algorithm import REGISTRY, Algorithm, Result
from .comm import daalfini, daalinit, fini, init, my_procid, num_procs
from .inputs import Partition, read_csv, read_hdf5, read_partition
from .kmeans import kmeans, kmeans_init
from .moments import covariance, low_order_moments
from .decomposition import pca, pca_transform, svd
from .linear_model import (linear_regression_prediction, linear_regression_training,
                           ridge_regression_prediction, ridge_regression_training)
from .naive_bayes import multinomial_naive_bayes_prediction, multinomial_naive_bayes_training

__all__ = [
    "init", "fini", "daalinit", "daalfini", "my_procid", "num_procs",
    "read_partition", "Partition", "read_csv", "read_hdf5", "Algorithm", "Result", "REGISTRY",
    "low_order_moments", "covariance", "kmeans_init", "kmeans",
    "pca", "pca_transform", "svd",
    "linear_regression_training", "linear_regression_prediction",
    "ridge_regression_training", "ridge_regression_prediction",
    "multinomial_naive_bayes_training", "multinomial_naive_bayes_prediction",
]
