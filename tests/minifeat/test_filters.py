import numpy as np
import pytest
import scipy.ndimage

from minidl import backend as B
from minifeat.filters import (GradientSampler, blur_gemm, gaussian_blur, gaussian_kernel1d,
                              gradient_polar, image_gradients, toeplitz_band)


@pytest.mark.parametrize("sigma", [0.7, 1.6, 3.0])
def test_kernel_is_normalised_gaussian(xp, sigma):
    k = B.to_host(gaussian_kernel1d(sigma, xp=xp)).astype(np.float64)
    r = int(4 * sigma + 0.5)
    assert k.shape == (2 * r + 1,)
    assert abs(k.sum() - 1) < 1e-6
    x = np.arange(-r, r + 1)
    np.testing.assert_allclose(k, np.exp(-x ** 2 / (2 * sigma ** 2)) / np.exp(
        -x ** 2 / (2 * sigma ** 2)).sum(), rtol=1e-5)


def test_kernel_rejects_bad_sigma():
    with pytest.raises(ValueError, match="`sigma` must be a positive number, got -1"):
        gaussian_kernel1d(-1)


def test_blur_matches_scipy_with_mirror_border(xp, rng):
    img = rng.random((23, 31)).astype(np.float32)
    got = B.to_host(gaussian_blur(xp.asarray(img), 1.3))
    want = scipy.ndimage.gaussian_filter(img.astype(np.float64), 1.3, mode="mirror", truncate=4)
    np.testing.assert_allclose(got, want, atol=1e-5)


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


def test_toeplitz_band_correlates_windows(xp, rng):
    k = rng.random(5).astype(np.float32)
    T = B.to_host(toeplitz_band(xp.asarray(k), 7))
    assert T.shape == (11, 7)
    x = rng.random(11).astype(np.float32)
    np.testing.assert_allclose(x @ T, np.correlate(x, k, mode="valid"), rtol=1e-5)


@pytest.mark.parametrize("shape", [(23, 31), (40, 9), (9, 70), (130, 77)])
@pytest.mark.parametrize("sigma", [0.8, 1.6, 3.1])
def test_blur_gemm_matches_correlate1d(xp, rng, shape, sigma):
    k = gaussian_kernel1d(sigma, xp=np)
    if min(shape) <= k.shape[0] // 2:
        pytest.skip("image smaller than the kernel radius")
    img = rng.random(shape).astype(np.float32)
    want = scipy.ndimage.correlate1d(scipy.ndimage.correlate1d(
        img.astype(np.float64), k, axis=1, mode="mirror"), k, axis=0, mode="mirror")
    # small blocks and column strips, so that strips, partial blocks and mirrors all occur
    got = blur_gemm(xp.asarray(img), xp.asarray(k), block=8, cols=16)
    np.testing.assert_allclose(B.to_host(got), want, atol=2e-6)
    out = xp.zeros(shape, dtype=xp.float32)
    assert blur_gemm(xp.asarray(img), xp.asarray(k), out=out) is out
    np.testing.assert_allclose(B.to_host(out), want, atol=2e-6)


def test_blur_gemm_rejects_tiny_images():
    with pytest.raises(ValueError, match="too small"):
        blur_gemm(np.zeros((3, 40), np.float32), gaussian_kernel1d(1.6, xp=np))


def test_gaussian_blur_engines_agree(rng):
    img = rng.random((240, 260)).astype(np.float32)  # above the GEMM size threshold
    got = gaussian_blur(img, 1.9)
    want = scipy.ndimage.gaussian_filter(img.astype(np.float64), 1.9, mode="mirror", truncate=4)
    np.testing.assert_allclose(got, want, atol=1e-5)


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
    import minifeat.filters as F

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
    assert (g._padded is not None) == dense and F._WINDOW_DENSE_RATIO >= 1
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
