"""Separable Gaussian filtering and image gradients, by hand.

Borders follow OpenCV's default ``BORDER_REFLECT_101`` (``dcb|abcd|cba``), which is
``mode='mirror'`` in ``scipy.ndimage`` and ``mode='reflect'`` in ``numpy.pad``.  The only
primitive borrowed is the 1-D correlation (``scipy.ndimage.correlate1d`` or its CuPy twin
``cupyx.scipy.ndimage.correlate1d``); kernels and their sizes are ours.
"""
from __future__ import annotations

import math

import numpy

from minidl import backend as B

__all__ = ["gaussian_kernel1d", "gaussian_blur", "image_gradients", "gradient_polar",
           "GradientSampler"]


def gaussian_kernel1d(sigma: float, truncate: float = 4.0, *, xp=None, dtype="float32"):
    """Normalised 1-D Gaussian of standard deviation ``sigma``.

    ``k[i] = exp(-(i - r)^2 / (2 sigma^2)) / sum``, ``i = 0 .. 2r``, radius
    ``r = int(truncate * sigma + 0.5)`` (scipy's rule; OpenCV's ``round(4 sigma)`` for float
    images differs by at most one tap whose weight is below 1e-4).

    Returns an array of shape (2r + 1,) on ``xp`` (default: the active backend).
    """
    if not (isinstance(sigma, (int, float, numpy.floating)) and sigma > 0):
        raise ValueError(f"`sigma` must be a positive number, got {sigma!r}")
    if not truncate > 0:
        raise ValueError(f"`truncate` must be positive, got {truncate!r}")
    r = int(truncate * float(sigma) + 0.5)
    x = numpy.arange(-r, r + 1, dtype=numpy.float64)
    k = numpy.exp(-0.5 * (x / float(sigma)) ** 2)
    k /= k.sum()
    k = k.astype(dtype)
    return B.to_device(k) if xp is None else B._backend_for_xp(xp).asarray(k)


def gaussian_blur(image, sigma: float, truncate: float = 4.0, *, out=None):
    """Blur a 2-D image with a separable Gaussian (rows, then columns), mirror borders.

    Parameters
    ----------
    image : ndarray of shape (H, W), float
    sigma : float > 0
    truncate : float, kernel radius in standard deviations
    out : ndarray of shape (H, W), optional, written in place and returned

    Returns
    -------
    ndarray of shape (H, W), same dtype (float32 for float32 input).
    """
    xp = B.get_array_module(image)
    if image.ndim != 2:
        raise ValueError(f"`image` must be 2-D, got shape {tuple(image.shape)}")
    nd = B.ndimage(xp)
    k = gaussian_kernel1d(sigma, truncate, xp=xp, dtype=image.dtype)
    tmp = nd.correlate1d(image, k, axis=1, mode="mirror")
    if out is None:
        return nd.correlate1d(tmp, k, axis=0, mode="mirror")
    nd.correlate1d(tmp, k, axis=0, output=out, mode="mirror")
    return out


def image_gradients(image):
    """Central differences ``gx = (I[y, x+1] - I[y, x-1]) / 2``,
    ``gy = (I[y+1, x] - I[y-1, x]) / 2``.

    Mirror (reflect-101) borders, so both are 0 across the border line.  ``gy`` points down
    (row index increases).  Returns two arrays of shape (H, W).
    """
    xp = B.get_array_module(image)
    if image.ndim != 2:
        raise ValueError(f"`image` must be 2-D, got shape {tuple(image.shape)}")
    p = xp.pad(image, 1, mode="reflect")
    gx = (p[1:-1, 2:] - p[1:-1, :-2]) * 0.5
    gy = (p[2:, 1:-1] - p[:-2, 1:-1]) * 0.5
    return gx, gy


def gradient_polar(image):
    """SIFT's gradient in polar form on the interior, as OpenCV computes it (Lowe 2004, sec. 5).

    ``dx = I[y, x+1] - I[y, x-1]``, ``dy = I[y-1, x] - I[y+1, x]`` (note: y *up*, not halved),
    ``mag = hypot(dx, dy)``, ``ori = atan2(dy, dx)`` in degrees, [0, 360).  The outermost ring of
    pixels has ``mag = 0`` (OpenCV skips those samples).  Returns ``(mag, ori)`` of shape (H, W).
    """
    xp = B.get_array_module(image)
    H, W = image.shape
    mag = xp.zeros((H, W), dtype=image.dtype)
    ori = xp.zeros((H, W), dtype=image.dtype)
    if H < 3 or W < 3:
        return mag, ori
    dx = image[1:-1, 2:] - image[1:-1, :-2]
    dy = image[:-2, 1:-1] - image[2:, 1:-1]
    mag[1:-1, 1:-1] = xp.sqrt(dx * dx + dy * dy)
    o = xp.arctan2(dy, dx) * (180.0 / math.pi)
    ori[1:-1, 1:-1] = xp.where(o < 0, o + 360.0, o)
    return mag, ori


class GradientSampler:
    """:func:`gradient_polar` of one image, read at flat pixel indices ``r * W + c``.

    Sparse reads compute the gradient at just those pixels; once more samples have been
    asked for than half the image has pixels, the dense maps are built once and indexed
    (keypoint windows overlap a lot on busy images, rarely on quiet ones).  Values are the
    same either way; pixels on the outer ring must be masked by the caller (dense maps hold 0
    there, sparse reads are clamped inside the image).
    """

    def __init__(self, image):
        self.image = image
        self.shape = tuple(image.shape)
        self.requested = 0
        self._maps = None

    def sample(self, flat):
        """``(mag, ori)`` at int array ``flat`` (any shape), ``ori`` in degrees [0, 360)."""
        xp = B.get_array_module(self.image)
        H, W = self.shape
        self.requested += int(flat.size)
        if self._maps is None and self.requested > H * W // 2:
            mag, ori = gradient_polar(self.image)
            self._maps = (mag.reshape(-1), ori.reshape(-1))
        if self._maps is not None:
            return self._maps[0][flat], self._maps[1][flat]
        g = self.image.reshape(-1)
        f = xp.clip(flat, W, H * W - W - 1)
        dx = g[f + 1] - g[f - 1]
        dy = g[f - W] - g[f + W]
        o = xp.arctan2(dy, dx) * (180.0 / math.pi)
        return xp.sqrt(dx * dx + dy * dy), xp.where(o < 0, o + 360.0, o).astype(g.dtype)
