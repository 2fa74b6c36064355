import numpy as np
import pytest

from minidl import backend as B
from minidl import parallel
from minifeat.gradients import GradientSampler, gradient_polar, image_gradients


def test_gradients_of_a_ramp(xp):
    y, x = np.mgrid[0:8, 0:9].astype(np.float32)
    gx, gy = image_gradients(xp.asarray(2 * x + 3 * y))
    np.testing.assert_allclose(B.to_host(gx)[:, 1:-1], 2, atol=1e-6)
    np.testing.assert_allclose(B.to_host(gy)[1:-1, :], 3, atol=1e-6)
    assert np.all(B.to_host(gx)[:, 0] == 0)  # mirror border: symmetric, zero slope
    mag, ori = gradient_polar(xp.asarray(2 * x + 3 * y))
    np.testing.assert_allclose(B.to_host(mag)[1:-1, 1:-1], np.hypot(4, 6), rtol=1e-5)
    # y up: the intensity grows downwards, so the angle is below the x axis (360 - 56.3)
    np.testing.assert_allclose(B.to_host(ori)[1:-1, 1:-1], 360 - np.degrees(np.arctan2(6, 4)),
                               rtol=1e-5)


def test_gradient_sampler_sparse_equals_dense(xp, rng):
    img = rng.random((30, 41)).astype(np.float32)
    mag, ori = gradient_polar(xp.asarray(img))
    flat = np.arange(41 + 1, 29 * 41 - 1, 7)
    flat = flat[(flat % 41 > 0) & (flat % 41 < 40)]
    m_s, o_s = GradientSampler(xp.asarray(img)).sample(xp.asarray(flat))
    # the same operations in the same order: the same bits (so results never depend on
    # whether a sampler read sparsely or built its maps)
    np.testing.assert_array_equal(B.to_host(m_s), B.to_host(mag).ravel()[flat])
    np.testing.assert_array_equal(B.to_host(o_s), B.to_host(ori).ravel()[flat])


def test_sparse_and_dense_windows_are_the_same_bits(xp, rng):
    img = xp.asarray(rng.random((80, 100)).astype(np.float32))
    r = xp.asarray(rng.integers(-6, 86, 12))  # 12 windows of 121 samples: read sparsely
    c = xp.asarray(rng.integers(-6, 106, 12))
    sparse = GradientSampler(img)
    dense = GradientSampler(img)
    dense.prepare(5)
    ws = sparse.windows(r, c, 5)
    assert sparse._padded is None and dense._padded[0] >= 11
    for a, b in zip(ws, dense.windows(r, c, 5)):
        np.testing.assert_array_equal(B.to_host(a), B.to_host(b))


def test_prepare_rejects_bad_radius():
    g = GradientSampler(np.zeros((8, 8), np.float32))
    for bad in (-1, 2.5, "3"):
        with pytest.raises(ValueError, match="`R` must be a non-negative int"):
            g.prepare(bad)


@pytest.mark.parametrize("dense", [False, True])
def test_gradient_sampler_windows(xp, rng, dense):
    import minifeat.gradients as G

    H, W, R = 60, 81, 3
    img = rng.random((H, W)).astype(np.float32)
    mag, ori = (B.to_host(a) for a in gradient_polar(xp.asarray(img)))
    r = np.array([0, 5, H - 1, -2, -100, H + 10, 15, H - 3])
    c = np.array([0, 7, W - 1, 3, 5, W + 19, 20, 2])
    g = GradientSampler(xp.asarray(img))
    if dense:  # ask for more than the sparse budget first
        g.requested = H * W
    wm, wo = (B.to_host(a) for a in g.windows(xp.asarray(r), xp.asarray(c), R))
    assert wm.shape == wo.shape == (len(r), 2 * R + 1, 2 * R + 1)
    assert (g._padded is not None) == dense and G._WINDOW_DENSE_RATIO >= 1
    for k in range(len(r)):
        for i in range(-R, R + 1):
            for j in range(-R, R + 1):
                y, x = r[k] + i, c[k] + j
                on = 0 < y < H - 1 and 0 < x < W - 1
                np.testing.assert_allclose(wm[k, i + R, j + R], mag[y, x] if on else 0,
                                           rtol=1e-5, atol=1e-7)
                if on and wm[k, i + R, j + R] > 1e-4:
                    d = abs(wo[k, i + R, j + R] - ori[y, x]) % 360
                    assert min(d, 360 - d) < 1e-3


def test_expected_demand_chooses_dense_maps_before_the_first_read(xp, rng):
    """Keypoints read a chunk at a time: a declared total demand over the sparse budget builds
    the maps at the first read (instead of sparse reads until the running total crosses it);
    a small one keeps sparse reads; values are the same either way."""
    img = xp.asarray(rng.random((40, 50)).astype(np.float32))
    r, c = xp.asarray(np.array([10, 20])), xp.asarray(np.array([12, 30]))
    small, big = GradientSampler(img), GradientSampler(img)
    small.expect(10)
    big.expect(40 * 50)
    ws, wb = small.windows(r, c, 2), big.windows(r, c, 2)
    assert small._padded is None and big._padded is not None
    for a, b in zip(ws, wb):
        np.testing.assert_allclose(B.to_host(a), B.to_host(b), rtol=1e-5, atol=1e-7)


def test_gradient_polar_writes_into_out(xp, rng):
    img = xp.asarray(rng.random((9, 12)).astype(np.float32))
    buf = xp.full((2, 13, 16), 7.0, dtype=xp.float32)
    got = gradient_polar(img, out=(buf[0, 2:11, 1:13], buf[1, 2:11, 1:13]))
    want = gradient_polar(img)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(B.to_host(a), B.to_host(b))
    assert float(buf[0, 0, 0]) == 7.0


def test_gradient_sampler_windows_wider_margin(xp, rng):
    img = xp.asarray(rng.random((20, 25)).astype(np.float32))
    r, c = xp.asarray(np.array([3, 19])), xp.asarray(np.array([0, 10]))
    g = GradientSampler(img)
    g.requested = 10 ** 6  # dense
    g.windows(r, c, 2)
    m1, o1 = g.windows(r, c, 45)  # margin 80 -> 160, maps copied
    g2 = GradientSampler(img)
    g2.requested = 10 ** 6
    m2, o2 = g2.windows(r, c, 45)
    np.testing.assert_array_equal(B.to_host(m1), B.to_host(m2))
    np.testing.assert_array_equal(B.to_host(o1), B.to_host(o2))


def test_gradient_polar_same_bits_with_two_threads(rng):
    """The strips of rows go to the host threads (an image over parallel.MIN_BYTES), each
    elementwise: one and two threads give the same bits."""
    img = rng.random((301, 517)).astype(np.float32)
    before = parallel.get_num_threads()
    try:
        parallel.set_num_threads(1)
        one = gradient_polar(img)
        parallel.set_num_threads(2)
        two = gradient_polar(img)
    finally:
        parallel.set_num_threads(before)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)
    assert one[0][0].max() == 0 and one[0][:, -1].max() == 0 and one[0][1:-1, 1:-1].min() > 0
