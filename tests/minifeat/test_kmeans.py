"""Tests for minifeat.kmeans: k-means++ / Lloyd / mini-batch, on every backend."""
import numpy as np
import pytest

from minidl.backend import to_host
from minifeat.kmeans import KMeans, MiniBatchKMeans, squared_distances


def _blobs(rng, k=5, n=200, d=3, spread=20.0):
    centres = rng.uniform(-spread, spread, (k, d))
    X = np.concatenate([c + 0.5 * rng.standard_normal((n, d)) for c in centres])
    return X, centres


def _match(found, truth):
    """Largest distance from a true centre to the nearest found one."""
    d = np.sqrt(((truth[:, None] - found[None]) ** 2).sum(-1))
    return d.min(axis=1).max()


def test_squared_distances_match_brute_force_in_chunks(xp, rng):
    X, C = rng.standard_normal((37, 4)), rng.standard_normal((6, 4))
    ref = ((X[:, None] - C[None]) ** 2).sum(-1)
    got = to_host(squared_distances(xp.asarray(X), xp.asarray(C), chunk_size=8))
    np.testing.assert_allclose(got, ref, atol=1e-10)
    assert got.min() >= 0


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_recovers_well_separated_centres(xp, rng, init):
    X, centres = _blobs(rng)
    km = KMeans(5, init=init, n_init=3, seed=0).fit(xp.asarray(X))
    C = to_host(km.cluster_centers_)
    assert C.shape == (5, 3) and _match(C, centres) < 0.2
    labels = to_host(km.labels_)
    assert labels.shape == (1000,) and sorted(np.bincount(labels).tolist()) == [200] * 5
    np.testing.assert_array_equal(to_host(km.predict(xp.asarray(X))), labels)
    D = to_host(km.transform(xp.asarray(X)))
    assert D.shape == (1000, 5)
    np.testing.assert_array_equal(D.argmin(axis=1), labels)
    np.testing.assert_allclose((D.min(axis=1) ** 2).sum(), km.inertia_, rtol=1e-9)
    assert km.score(xp.asarray(X)) == pytest.approx(-km.inertia_)


def test_inertia_never_increases_across_lloyd_iterations(xp, rng):
    X = rng.random((600, 2)).astype(np.float32)       # no structure: many iterations
    km = KMeans(12, init="random", max_iter=100, tol=0, seed=3).fit(xp.asarray(X))
    h = np.asarray(km.inertia_history_)
    assert len(h) == km.n_iter_ >= 5
    assert np.all(np.diff(h) <= 1e-5 * h[0])           # float32 rounding only
    assert km.inertia_ <= h[-1] * (1 + 1e-5)


def test_kmeanspp_beats_a_bad_start_and_is_seeded(xp, rng):
    X, _ = _blobs(rng, k=8, n=50)
    a = KMeans(8, seed=7, max_iter=1).fit(xp.asarray(X))
    b = KMeans(8, seed=7, max_iter=1).fit(xp.asarray(X))
    np.testing.assert_array_equal(to_host(a.cluster_centers_), to_host(b.cluster_centers_))
    # after one Lloyd step, greedy k-means++ already sits near the optimum (8 * 50 * 3 * 0.25)
    assert a.inertia_ < 2 * 300


def test_minibatch_is_within_a_few_percent_of_full_kmeans(xp, rng):
    X = rng.standard_normal((4000, 8))
    full = KMeans(16, seed=0, max_iter=100).fit(xp.asarray(X))
    mini = MiniBatchKMeans(16, batch_size=256, seed=0, max_iter=10).fit(xp.asarray(X))
    assert mini.batch_size == 256 and len(mini.inertia_history_) == mini.n_iter_
    # measured: 1.01-1.02
    assert mini.inertia_ <= 1.04 * full.inertia_
    Xs, centres = _blobs(rng)
    mb = KMeans(5, seed=1, batch_size=100, max_iter=20).fit(xp.asarray(Xs))
    assert _match(to_host(mb.cluster_centers_), centres) < 0.3


def test_empty_clusters_are_reseeded_at_the_farthest_points(xp, rng):
    X, centres = _blobs(rng, k=3, n=100)
    init = np.concatenate([centres[:1], centres[:1] + 0.01, [[1e3, 1e3, 1e3]]])   # 2 bad
    km = KMeans(3, init=xp.asarray(init), max_iter=50, seed=0).fit(xp.asarray(X))
    assert sorted(np.bincount(to_host(km.labels_), minlength=3).tolist()) == [100] * 3
    assert _match(to_host(km.cluster_centers_), centres) < 0.2


def test_duplicate_points_fewer_than_k_distinct(xp):
    X = np.repeat(np.eye(2), 10, axis=0)
    km = KMeans(4, seed=0).fit(xp.asarray(X))
    assert km.inertia_ == pytest.approx(0.0, abs=1e-12)


def test_bad_arguments_name_them(xp):
    X = xp.zeros((10, 2))
    with pytest.raises(ValueError, match="`n_clusters`"):
        KMeans(0)
    with pytest.raises(ValueError, match="`init`"):
        KMeans(2, init="kmeans")
    with pytest.raises(ValueError, match=r"`init` as an array must have shape \(3, D\)"):
        KMeans(3, init=np.zeros((2, 2)))
    with pytest.raises(ValueError, match="`batch_size`"):
        KMeans(2, batch_size=0)
    with pytest.raises(ValueError, match="`tol`"):
        KMeans(2, tol=-1.0)
    with pytest.raises(ValueError, match="`max_iter`"):
        KMeans(2, max_iter=0)
    with pytest.raises(ValueError, match="`X` must be 2-D"):
        KMeans(2).fit(xp.zeros(10))
    with pytest.raises(ValueError, match="at least n_clusters=20 rows"):
        KMeans(20).fit(X)
    with pytest.raises(RuntimeError, match="not fitted"):
        KMeans(2).predict(X)
    km = KMeans(2, seed=0).fit(X)
    with pytest.raises(ValueError, match="`X` must have 2 columns"):
        km.predict(xp.zeros((3, 5)))
    assert "KMeans(n_clusters=2" in repr(km)
