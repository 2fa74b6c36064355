import numpy as np
import pytest

from minidl import backend as B
from minifeat.matching import (apply_homography, homography_dlt, match_descriptors,
                               ransac_homography)

H_TRUE = np.array([[0.9, -0.2, 30.0], [0.15, 1.1, -12.0], [2e-4, -1e-4, 1.0]])


def test_nearest_neighbours_of_a_permutation(xp, rng):
    a = rng.random((300, 128)).astype(np.float32)
    perm = rng.permutation(300)
    b = a[perm] + rng.normal(0, 1e-3, a.shape).astype(np.float32)
    m, d = match_descriptors(xp.asarray(a), xp.asarray(b), ratio=0.8, cross_check=True,
                             chunk=64)
    m = B.to_host(m)
    assert m.shape == (300, 2)
    np.testing.assert_array_equal(perm[m[:, 1]], m[:, 0])
    assert float(B.to_host(d).max()) < 0.05


def test_ratio_test_drops_ambiguous(xp):
    a = np.array([[0, 0], [10, 0]], np.float32)
    b = np.array([[1, 0], [-1, 0], [10, 0.1]], np.float32)
    m, _ = match_descriptors(xp.asarray(a), xp.asarray(b), ratio=0.8)
    np.testing.assert_array_equal(B.to_host(m), [[1, 2]])


def test_match_errors():
    with pytest.raises(ValueError,
                       match="descriptor lengths differ: `desc1` has D=3, `desc2` has D=4"):
        match_descriptors(np.zeros((2, 3)), np.zeros((2, 4)))


def test_non_finite_descriptors_are_refused(xp):
    good = xp.asarray(np.eye(3, 4, dtype=np.float32))
    bad = xp.asarray(np.array([[0, 0, 0, 0], [np.nan, 1, 0, 0], [0, np.inf, 0, 0]], np.float32))
    with pytest.raises(ValueError, match=r"`desc2` has 2 row\(s\) with a NaN or inf value "
                                         r"\(of 3\); expected finite descriptors"):
        match_descriptors(good, bad)
    with pytest.raises(ValueError, match="`desc1` has 2 row"):
        match_descriptors(bad, good)


def test_dlt_recovers_exact_homography(xp, rng):
    p = rng.random((20, 2)) * 300
    q = apply_homography(H_TRUE, p)
    H = B.to_host(homography_dlt(xp.asarray(p), xp.asarray(q)))
    np.testing.assert_allclose(H, H_TRUE, rtol=1e-6, atol=1e-9)


def test_ransac_with_outliers_is_seeded(xp, rng):
    p = rng.random((120, 2)) * 400
    q = apply_homography(H_TRUE, p) + rng.normal(0, 0.3, (120, 2))
    bad = rng.random(120) < 0.4
    q[bad] = rng.random((int(bad.sum()), 2)) * 400
    H, inl = ransac_homography(xp.asarray(p), xp.asarray(q), threshold=2.0, seed=3)
    H2, inl2 = ransac_homography(xp.asarray(p), xp.asarray(q), threshold=2.0, seed=3)
    inl = B.to_host(inl)
    assert (inl == ~bad).mean() > 0.97
    np.testing.assert_array_equal(inl, B.to_host(inl2))
    corners = np.array([[0, 0], [400, 0], [400, 400], [0, 400.0]])
    err = np.linalg.norm(apply_homography(B.to_host(H), corners)
                         - apply_homography(H_TRUE, corners), axis=1)
    assert err.max() < 1.5


def test_ransac_too_few_points(xp):
    H, inl = ransac_homography(xp.zeros((3, 2)), xp.zeros((3, 2)))
    assert H is None and inl.shape == (3,)


def test_mutual_nearest_neighbours_without_ratio(xp):
    # b[0] is the nearest of both a[0] and a[1] but only a[0]'s in return; a[2] and b[2] are
    # each other's nearest although b[1] is almost as near (a ratio test would drop it)
    a = np.array([[0, 0], [1.5, 0], [10, 0]], np.float32)
    b = np.array([[0.1, 0], [10.24, 0], [10.2, 0]], np.float32)
    m, _ = match_descriptors(xp.asarray(a), xp.asarray(b), ratio=None, cross_check=True)
    np.testing.assert_array_equal(B.to_host(m), [[0, 0], [2, 2]])
    m, _ = match_descriptors(xp.asarray(a), xp.asarray(b), ratio=0.8, cross_check=True)
    np.testing.assert_array_equal(B.to_host(m), [[0, 0]])
    m, _ = match_descriptors(xp.asarray(a), xp.asarray(b), ratio=None)
    np.testing.assert_array_equal(B.to_host(m), [[0, 0], [1, 0], [2, 2]])
