import numpy as np
import pytest
import scipy.ndimage

from minidl import backend as B
from minifeat.filters import gaussian_blur, gaussian_kernel1d, gradient_polar, image_gradients


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
