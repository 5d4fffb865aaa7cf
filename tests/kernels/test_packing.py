"""The wire format of clusterml's reductions (clusterml.spmd.packing): no MPI needed."""

import pickle

import numpy as np
import pytest

from clusterml.kernels import covariance as cov_k
from clusterml.kernels import kmeans as km_k
from clusterml.spmd import packing

X = np.random.default_rng(3).normal(size=(50, 5))


@pytest.mark.parametrize("value", [
    None, 3, -(1 << 62), 2.5, True, np.float32(1.5), np.int64(7), np.arange(6).reshape(2, 3),
    np.zeros((0, 4)), np.asfortranarray(X[:4]), (np.ones(2), [1, 2.0]),
    cov_k.partial(X), km_k.lloyd_pass(km_k.Rows(X), X[:3].copy(), X[:3].mean(axis=0)),
    km_k.ExactSum.of(X), {"not": "packable"}, 1 << 70,
], ids=lambda v: type(v).__name__)
def test_round_trip_keeps_types_and_bits(value):
    buf = packing.encode(value)
    back = packing.decode(buf.copy())
    if isinstance(value, np.ndarray):
        assert back.dtype == value.dtype and back.shape == value.shape
        assert back.tobytes() == np.ascontiguousarray(value).tobytes()
    else:
        assert type(back) is type(value)
        assert pickle.dumps(back) == pickle.dumps(value)


def test_summaries_of_arrays_travel_without_pickle():
    for value in (cov_k.partial(X), (np.ones(3), np.zeros((2, 2)))):
        buf = packing.encode(value)
        assert bytes(buf[:1]) == b"D"
        # the header is pickled once per structure; the arrays are raw bytes after it
        assert buf.nbytes < len(pickle.dumps(value)) + 64
    assert bytes(packing.encode({"a": 1})[:1]) == b"P"
