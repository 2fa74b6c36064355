import numpy as np
import pytest
import scipy.ndimage

from minidl import backend as B
from minifeat.filters import blur_gemm, gaussian_blur, gaussian_kernel1d, toeplitz_band


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
