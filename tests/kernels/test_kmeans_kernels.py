"""k-means kernels in one process: chunks stand in for ranks (1, 2, 3 and 7 of them).

Checks against scikit-learn's Lloyd on all rows, exact split invariance of the
seeded initialisations, the counter-based generator and the exact sums.
"""

import math

import numpy as np
import pytest
from sklearn.cluster import KMeans

from clusterml.kernels import kmeans as kk
from clusterml.kernels import random as kr


# Row counts per simulated rank: 1 rank; 2 with an empty one; 3 uneven; 7 with
# empty ranks and a first rank holding a single row.
def layouts(n):
    return [
        [n],
        [n // 3, 0, n - n // 3],
        [5, n - 25, 20],
        [1, 0, 17, n // 2, 0, 3, n - n // 2 - 21],
    ]


def blobs(n_per=60, centres=5, d=3, spread=8.0, seed=1, offset=0.0):
    rng = np.random.default_rng(seed)
    locs = rng.normal(scale=spread, size=(centres, d))
    X = np.vstack([rng.normal(loc=c, size=(n_per, d)) for c in locs])
    return X[rng.permutation(len(X))] + offset


def run_init(X, counts, method, k, block_rows=16, **kw):
    return kk.init_centroids(kk.Chunks.split(X, counts, block_rows=block_rows), method, k, **kw)


# --------------------------------------------------------------------------
# counter-based random numbers


def test_bits_are_splitmix64():
    # SplitMix64 seeded with 0 (Steele et al. 2014; Vigna's reference outputs).
    out = kr.bits(0, np.arange(3))
    assert [int(v) for v in out] == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]


def test_uniform_is_a_function_of_the_global_index():
    key = kr.stream_key(777777, 2, 5, 0)
    g = np.arange(10_000)
    u = kr.uniform(key, g)
    assert np.all((u > 0) & (u < 1))
    assert np.array_equal(kr.uniform(key, g[1234:5678]), u[1234:5678])
    assert np.array_equal(kr.uniform(key, g[::-1]), u[::-1])
    assert abs(u.mean() - 0.5) < 0.01 and abs(u.var() - 1 / 12) < 0.005
    # a histogram that is flat within chance (chi-square, 20 bins, p ~ 1e-6 bound)
    hist = np.bincount((u * 20).astype(int), minlength=20)
    chi2 = ((hist - 500) ** 2 / 500).sum()
    assert chi2 < 60
    # lag-1 correlation of consecutive indices
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 0.03


def test_compiled_uniforms_equal_numpy_bit_for_bit():
    from clusterml.kernels.fused import uniforms

    g = np.concatenate([np.arange(5000), [2**40 + 3, 2**62, 2**63 - 1]]).astype(np.int64)
    for key in (0, kr.stream_key(777777, 2, 5, 0), kr.MASK64):
        assert np.array_equal(uniforms(np.uint64(key), g), kr.uniform(key, g))


def test_stream_keys_differ():
    keys = {kr.stream_key(s, *t) for s in (0, 1, 777777) for t in [(), (1,), (2,), (1, 0), (0, 1),
                                                                    (2, 0, 0), (2, 0, 1), (2, 1, 0)]}
    assert len(keys) == 24
    u1 = kr.uniform(kr.stream_key(1, 2, 0, 0), np.arange(1000))
    u2 = kr.uniform(kr.stream_key(1, 2, 0, 1), np.arange(1000))
    assert abs(np.corrcoef(u1, u2)[0, 1]) < 0.1


# --------------------------------------------------------------------------
# exact sums


def test_exact_sum_is_correctly_rounded_and_split_invariant():
    rng = np.random.default_rng(3)
    v = np.concatenate([
        rng.normal(size=1000) * 10.0 ** rng.integers(-30, 30, size=1000),
        [1e300, -1e300, 1.0, 1e-16, 5e-324, 0.0, -0.0, 3.0, -2.5e-310],
    ])
    rng.shuffle(v)
    whole = kk.ExactSum.of(v)
    assert float(whole) == math.fsum(v)
    for cuts in ([1], [10, 500], [0, 1, 2, 3, 999]):
        parts = np.split(v, cuts)
        total = kk.ExactSum()
        for p in parts:
            total = total + kk.ExactSum.of(p)
        assert total == whole
    # a sum that rounds differently in float64 order
    w = np.array([1.0, 1e-16, 1e-16, 1e-16, 1e-16])
    assert float(kk.ExactSum.of(w)) == math.fsum(w) != w.sum()
    assert float(kk.ExactSum.of(np.empty(0))) == 0.0
    assert float(kk.ExactSum.of([1e308, 1e308])) == math.inf
    # the compiled binning and the NumPy one agree exactly
    assert kk.ExactSum.of(v) == kk.ExactSum._of_numpy(v) or float(kk.ExactSum.of(v)) == float(
        kk.ExactSum._of_numpy(v))
    for vals in (v, w, [-0.0], [5e-324, -5e-324, 2.5e-310]):
        assert float(kk.ExactSum.of(vals)) == float(kk.ExactSum._of_numpy(np.asarray(vals)))


# --------------------------------------------------------------------------
# per-row distances


def test_sqdist_rows_does_not_depend_on_the_block():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 13))
    C = rng.normal(size=(7, 13))
    whole = kk.sqdist_rows(X, C)
    ref = ((X[:, None, :] - C[None, :, :]) ** 2).sum(-1)
    np.testing.assert_allclose(whole, ref, rtol=1e-12, atol=1e-12)
    for start in (1, 2, 3, 5, 8, 13, 100, 777):
        for m in (1, 2, 3, 7, 64, 333):
            assert np.array_equal(kk.sqdist_rows(X[start:start + m], C), whole[start:start + m])


# --------------------------------------------------------------------------
# initialisation


@pytest.mark.parametrize("method", kk.INIT_METHODS)
@pytest.mark.parametrize("n_trials", [1, 3])
def test_init_is_the_same_for_every_split(method, n_trials):
    X = blobs()
    results = [run_init(X, c, method, 6, seed=42, n_trials=n_trials) for c in layouts(len(X))]
    results.append(run_init(X, [len(X)], method, 6, block_rows=None, seed=42, n_trials=n_trials))
    for r in results:
        assert r.shape == (6, 3)
        assert np.array_equal(r, results[0]), f"{method}: a split changed the centroids"
    # centroids are rows of X
    assert all((np.abs(X - c).sum(1) == 0).any() for c in results[0])


@pytest.mark.parametrize("method", ["randomDense", "plusPlusDense", "parallelPlusDense"])
def test_seed_matters(method):
    X = blobs()
    a = run_init(X, [len(X)], method, 6, seed=1)
    b = run_init(X, [len(X)], method, 6, seed=2)
    assert not np.array_equal(a, b)


def test_first_rows_even_when_rank0_holds_fewer():
    X = blobs()
    for counts in ([1, 0, 2, len(X) - 3], [0, 0, len(X)], [len(X)]):
        got = run_init(X, counts, "defaultDense", 5)
        assert np.array_equal(got, X[:5])
        assert np.array_equal(run_init(X, counts, "deterministicDense", 5), X[:5])


def test_random_rows_are_distinct_and_uniform():
    X = np.arange(40.0).reshape(20, 2)
    hits = np.zeros(20)
    for seed in range(2000):
        C = run_init(X, [3, 0, 17], "randomDense", 4, seed=seed)
        idx = (C[:, 0] / 2).astype(int)
        assert len(set(idx)) == 4
        hits[idx] += 1
    expected = 2000 * 4 / 20
    chi2 = ((hits - expected) ** 2 / expected).sum()
    assert chi2 < 60, hits      # 19 degrees of freedom; 60 is p ~ 3e-6


def test_plusplus_draw_is_proportional_to_weight():
    # The reduction step's first draw: rows weighted by multiplicity only.
    Y = np.arange(8.0).reshape(4, 2)
    w = np.array([1.0, 2.0, 3.0, 4.0])
    hits = np.zeros(4)
    for seed in range(4000):
        team = kk.Chunks([kk.Rows(Y, gidx=np.array([10, 3, 7, 1]), weights=w)])
        c = kk.plusplus(team, 1, seed=seed)
        hits[int(c[0, 0] // 2)] += 1
    expected = 4000 * w / w.sum()
    chi2 = ((hits - expected) ** 2 / expected).sum()
    assert chi2 < 30, hits      # 3 degrees of freedom


def test_plusplus_second_centre_follows_d2():
    # Rows 0..4 on a line; the first centre is row 0 (start), so the second is
    # drawn with probability proportional to x**2.
    X = np.array([[0.0], [1.0], [2.0], [3.0], [4.0]])
    hits = np.zeros(5)
    for seed in range(4000):
        team = kk.Chunks.split(X, [2, 3])
        for rows in team.chunks:  # absorb the starting centre, as a draw would
            kk._draw(rows, kk.NewCentres.after(None, [0], X[:1]), [])
        c = kk.plusplus(team, 2, seed=seed, start=[X[0]])
        hits[int(c[1, 0])] += 1
    p = X[:, 0] ** 2 / (X[:, 0] ** 2).sum()
    assert hits[0] == 0
    expected = 4000 * p[1:]
    chi2 = ((hits[1:] - expected) ** 2 / expected).sum()
    assert chi2 < 30, hits


@pytest.mark.parametrize("method,n_trials", [("plusPlusDense", 1), ("plusPlusDense", 4),
                                             ("parallelPlusDense", 1), ("parallelPlusDense", 3)])
@pytest.mark.parametrize("offset", [0.0, 1e9])
def test_seeding_spreads_over_separated_blobs(method, n_trials, offset):
    rng = np.random.default_rng(7)
    locs = np.array([[0, 0], [100, 0], [0, 100], [100, 100], [50, 50], [-100, 50]], float)
    X = np.vstack([rng.normal(loc=c, scale=0.5, size=(40, 2)) for c in locs]) + offset
    for seed in range(10):
        C = run_init(X, [50, 0, 190], method, 6, seed=seed, n_trials=n_trials)
        nearest = np.argmin(((C[:, None, :] - offset - locs[None]) ** 2).sum(-1), axis=1)
        assert sorted(nearest) == list(range(6)), (seed, C)


def test_parallel_plusplus_with_few_distinct_rows():
    # 3 distinct values, 5 clusters: every distinct row is found, the rest duplicate.
    X = np.repeat(np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]), 20, axis=0)
    for method in ("plusPlusDense", "parallelPlusDense"):
        results = [run_init(X, c, method, 5, seed=3) for c in layouts(len(X))]
        assert all(np.array_equal(r, results[0]) for r in results)
        assert len({tuple(r) for r in results[0]}) == 3


# --------------------------------------------------------------------------
# Lloyd


def run_lloyd(X, counts, C0, max_iter, block_rows=16, threshold=0.0):
    team = kk.Chunks.split(X, counts, block_rows=block_rows)
    C, obj, n_iter = kk.lloyd(team, C0, max_iter, threshold)
    labels = np.concatenate([r.labels for r in team.chunks])
    return C, labels, obj, n_iter


def sk_lloyd(X, C0, max_iter):
    return KMeans(len(C0), init=C0, n_init=1, tol=0.0, algorithm="lloyd", max_iter=max_iter).fit(X)


@pytest.mark.parametrize("max_iter", [2, 300])
@pytest.mark.parametrize("offset", [0.0, 1e6])
def test_lloyd_matches_scikit_learn(max_iter, offset):
    X = blobs(offset=offset)
    C0 = X[[0, 1, 2, 3, 4]]
    ref = sk_lloyd(X, C0, max_iter)
    for counts in layouts(len(X)):
        C, labels, obj, n_iter = run_lloyd(X, counts, C0, max_iter)
        np.testing.assert_allclose(C, ref.cluster_centers_, rtol=1e-10, atol=1e-9 * max(1, offset))
        assert np.array_equal(labels, ref.labels_)
        np.testing.assert_allclose(obj, ref.inertia_, rtol=1e-9)
        assert n_iter == ref.n_iter_
    if max_iter == 300:
        assert ref.n_iter_ < 300      # converged, not stopped


def test_lloyd_empty_cluster_takes_the_farthest_row():
    X = blobs()
    C0 = np.vstack([X[:3], [[1e3, 1e3, 1e3]]])      # the last centroid attracts nothing
    for max_iter in (1, 2, 300):
        ref = sk_lloyd(X, C0, max_iter)
        for counts in layouts(len(X)):
            C, labels, obj, _n_iter = run_lloyd(X, counts, C0, max_iter)
            np.testing.assert_allclose(C, ref.cluster_centers_, rtol=1e-10, atol=1e-10)
            assert np.array_equal(labels, ref.labels_)
            np.testing.assert_allclose(obj, ref.inertia_, rtol=1e-9)
    # after one iteration the empty centroid is the row farthest from its centroid
    labels0 = np.argmin(((X[:, None] - C0[None]) ** 2).sum(-1), axis=1)
    far = np.argmax(((X - C0[labels0]) ** 2).sum(1))
    C, *_ = run_lloyd(X, [len(X)], C0, 1)
    assert np.array_equal(C[3], X[far])


def test_lloyd_zero_iterations_assigns_only():
    X = blobs()
    C0 = X[[5, 50, 100]]
    C, labels, obj, n_iter = run_lloyd(X, [20, 0, len(X) - 20], C0, 0)
    D = ((X[:, None] - C0[None]) ** 2).sum(-1)
    assert np.array_equal(C, C0) and n_iter == 0
    assert np.array_equal(labels, D.argmin(1))
    np.testing.assert_allclose(obj, D.min(1).sum(), rtol=1e-12)


def test_lloyd_accuracy_threshold_as_daal4py():
    X = blobs()
    C0 = X[[0, 1, 2, 3, 4]]
    # daal4py compares |previous - current objective| with the threshold, the
    # first previous being 0: a threshold above the first objective stops after one.
    _, _, obj0, _ = run_lloyd(X, [len(X)], C0, 0)
    C, _, _, n_iter = run_lloyd(X, [len(X)], C0, 50, threshold=obj0 * 1.01)
    assert n_iter == 1
    np.testing.assert_allclose(C, sk_lloyd(X, C0, 1).cluster_centers_, rtol=1e-10)
    _, _, _, n_small = run_lloyd(X, [len(X)], C0, 50, threshold=1e-300)
    assert n_small == sk_lloyd(X, C0, 300).n_iter_


def test_lloyd_blocks_do_not_change_the_result():
    X = blobs()
    C0 = X[:5]
    a = run_lloyd(X, [len(X)], C0, 300, block_rows=7)
    b = run_lloyd(X, [len(X)], C0, 300, block_rows=None)
    np.testing.assert_allclose(a[0], b[0], rtol=1e-12)
    assert np.array_equal(a[1], b[1]) and a[3] == b[3]


def test_lloyd_pass_in_place_and_shifted_copy_agree(monkeypatch):
    # The GEMM reads rows in place unless the centroids sit far from the origin; both
    # paths give the same assignments, sums and objective.
    X = blobs(offset=30.0)
    C = X[:5].copy()
    shift = C.mean(axis=0)
    out = {}
    for ratio in (0.0, np.inf):                      # 0: always copy; inf: never
        monkeypatch.setattr(kk, "_SHIFT_RATIO", ratio)
        rows = kk.Rows(X, block_rows=37)
        out[ratio] = (kk.lloyd_pass(rows, C, shift), rows.labels.copy())
    (a, la), (b, lb) = out[0.0], out[np.inf]
    assert np.array_equal(la, lb)
    np.testing.assert_array_equal(a.counts, b.counts)
    np.testing.assert_allclose(a.sums, b.sums, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(a.objective, b.objective, rtol=1e-12)
    ref = ((X - C[la]) ** 2).sum()
    np.testing.assert_allclose(a.objective, ref, rtol=1e-12)
    monkeypatch.undo()
    assert kk._needs_shifted_copy(C + 1e6, shift + 1e6) and not kk._needs_shifted_copy(C - shift, 0 * shift)
