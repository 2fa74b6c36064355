"""Image gradients (Sobel, Scharr) and the Canny edge detector, written once over ``xp``.

Shape legend: an image is ``(H, W)`` (rows ``y``, columns ``x``); every output has the same
shape.  Everything runs unchanged on NumPy, CuPy and the strict CuPy stand-in: filtering uses
only the separable 1-D primitive ``correlate1d`` of ``scipy.ndimage`` / ``cupyx.scipy.ndimage``
(through :func:`minidl.backend.ndimage`); maxima and hysteresis use plain array ops.

The small private helpers here (``gaussian_smooth``, ``gaussian_derivative``, ``max_filter``)
are shared by :mod:`minifeat.corners` and :mod:`minifeat.blobs`.  Images are read through the
input contract of :mod:`minifeat.io` (:func:`~minifeat.io.as_image`: paths, dtype scaling,
[0, 1] floats, no NaN, ``channel_order``) by :func:`edges_canny`; the gradients are linear
filters and take any real array (:func:`~minifeat.io.as_array2d`).

Gradient units
--------------
``gradient_sobel`` and ``gradient_scharr`` are normalised to return the true derivative: on the
ramp ``f = a*x`` they give ``gx == a``.  (``scipy.ndimage.sobel`` and scikit-image's ``canny``
use the unnormalised kernel, 8 times larger; divide their thresholds by 8 to compare.)
"""
from __future__ import annotations

import math

from minidl.backend import get_array_module
from minifeat.io import as_array2d, as_image
from minifeat.separable import check_positive, correlate1d, gaussian_smooth, max_filter

__all__ = ["gradient_sobel", "gradient_scharr", "gradient_magnitude", "edges_canny"]


# --------------------------------------------------------------------------- validation

# --------------------------------------------------------------------------- gradients

_DIFF = (-0.5, 0.0, 0.5)          # correlation weights of the central difference


def _gradient(image, smooth):
    xp, image = as_array2d(image)
    gx = correlate1d(xp, correlate1d(xp, image, smooth, 0), _DIFF, 1)
    gy = correlate1d(xp, correlate1d(xp, image, smooth, 1), _DIFF, 0)
    return gx, gy


def gradient_sobel(image):
    """Sobel gradient ``(gx, gy)`` of a 2-D image, normalised to the true derivative.

    ``gx = [1, 2, 1]^T / 4  (x)  [-1, 0, 1] / 2``: smooth across, central difference along
    (Sobel & Feldman 1968).  Borders replicate the edge pixel.

    Parameters
    ----------
    image : ndarray of shape (H, W), any real dtype (ints are converted to float32, not
        scaled: a linear filter), or a file path (read by :func:`minifeat.io.as_image`)

    Returns
    -------
    gx, gy : ndarrays of shape (H, W): d/dx (along columns) and d/dy (along rows).

    Examples
    --------
    >>> import numpy as np
    >>> gx, gy = gradient_sobel(np.tile(np.arange(5.0) * 2, (5, 1)))
    >>> float(gx[2, 2]), float(gy[2, 2])
    (2.0, 0.0)
    """
    return _gradient(image, (0.25, 0.5, 0.25))


def gradient_scharr(image):
    """Scharr gradient ``(gx, gy)``: like :func:`gradient_sobel` with the smoothing
    ``[3, 10, 3] / 16``, which is closer to rotation invariant (Scharr 2000)."""
    return _gradient(image, (3 / 16, 10 / 16, 3 / 16))


def gradient_magnitude(image, method: str = "sobel"):
    """``sqrt(gx^2 + gy^2)`` with ``method`` in {"sobel", "scharr"}; shape (H, W)."""
    if method not in ("sobel", "scharr"):
        raise ValueError(f"`method` must be 'sobel' or 'scharr', got {method!r}")
    gx, gy = (gradient_sobel if method == "sobel" else gradient_scharr)(image)
    xp = get_array_module(gx)
    return xp.sqrt(gx * gx + gy * gy)


# --------------------------------------------------------------------------- Canny

def _non_maximum_suppression(xp, gx, gy, mag):
    """Keep pixels whose magnitude is a maximum along the quantised gradient direction.

    The direction ``atan2(gy, gx)`` modulo 180 degrees falls in one of four sectors (0, 45, 90,
    135 degrees); each pixel is compared with its two neighbours along that direction.  Ties
    (a step edge exactly between two pixels gives two equal magnitudes, up to a relative 1e-5
    of rounding) are broken by keeping the pixel on the negative side only (``>`` backwards,
    ``>=`` forwards), so the line stays one pixel wide.  Border pixels are never kept.
    """
    H, W = mag.shape
    angle = xp.arctan2(gy, gx) * (180.0 / math.pi)
    angle = xp.where(angle < 0, angle + 180.0, angle)
    sector = ((angle + 22.5) // 45.0).astype(xp.int32) % 4
    m = mag[1:-1, 1:-1]
    keep = xp.zeros((H - 2, W - 2), dtype=bool)

    def nb(dy, dx):
        return mag[1 + dy:H - 1 + dy, 1 + dx:W - 1 + dx]

    # sector -> (dy, dx) of the forward neighbour along the gradient (rows grow downwards)
    tie = m * 1e-5                 # rounding makes exact ties unequal: compare with slack
    for s, (dy, dx) in enumerate(((0, 1), (1, 1), (1, 0), (1, -1))):
        is_max = (m >= nb(dy, dx) - tie) & (m > nb(-dy, -dx) + tie)
        keep = keep | ((sector[1:-1, 1:-1] == s) & is_max)
    out = xp.zeros((H, W), dtype=mag.dtype)
    out[1:-1, 1:-1] = xp.where(keep, m, 0)
    return out


def _hysteresis(xp, weak, strong, max_iter: int = 10_000):
    """Pixels of ``weak`` 8-connected (through ``weak``) to some pixel of ``strong``.

    Connected-component labelling with array ops, in the spirit of Shiloach & Vishkin (1982):
    every weak pixel starts with the label ``1 + its flat index``, so a label also names a pixel
    (its *origin*).  Each round

    1. takes the 3x3 maximum of the labels inside ``weak`` (spread by one pixel);
    2. hooks: when a pixel's label grows from ``L`` to ``M``, the origin of ``L`` gets ``M``
       too (``xp.maximum.at``), so news reaches every pixel that points at that origin;
    3. jumps pointers twice (``label = label_of_origin[label]``).

    Labels only grow and never leave their component; it stops when no label changes, with
    each component holding its largest index.  Plain spreading needs as many rounds as the
    longest path (777 rounds on detect_blob.png); hooking and jumping cut that to a handful
    (7 there, same result as ``scipy.ndimage.label``).
    A component survives when any of its pixels is strong.
    """
    H, W = weak.shape
    n = H * W
    flat_weak = weak.reshape(-1)
    # int32: CuPy's maximum.at (scatter_max) supports int32/uint32/uint64, not int64
    itype = xp.int32 if n < 2**31 - 1 else xp.uint64
    lab = xp.where(flat_weak, xp.arange(1, n + 1, dtype=itype), 0).astype(itype)
    for _ in range(max_iter):
        new = xp.where(weak, max_filter(xp, lab.reshape(H, W), (1, 1)), 0).reshape(-1)
        grew = new > lab
        xp.maximum.at(new, lab[grew] - 1, new[grew])
        for _jump in range(2):
            new = xp.where(flat_weak, new[xp.maximum(new, 1) - 1], 0).astype(itype)
        if not bool(xp.any(new != lab)):
            break
        lab = new
    has_strong = xp.zeros(n + 1, dtype=bool)
    has_strong[lab[strong.reshape(-1) & flat_weak]] = True   # duplicates all write True
    has_strong[0] = False
    return has_strong[lab].reshape(H, W)


def edges_canny(image, sigma: float = 1.0, low: float = 0.0125, high: float = 0.025,
                **image_options):
    """Canny edges (Canny 1986): a boolean map of thin, connected edges.

    Stages: Gaussian smoothing (``sigma``, edge-replicated border) -> Sobel gradient (true
    derivative units) -> non-maximum suppression along the gradient direction quantised to 4
    sectors -> hysteresis: a pixel is an edge when its suppressed magnitude is ``> low`` and it is
    8-connected through such pixels to one ``> high``.  Connectivity is found by label
    propagation with hooking and pointer jumping (see ``_hysteresis``), all in array ops.

    Parameters
    ----------
    image : file path or array (H, W) / (H, W, 3|4), read by :func:`minifeat.io.as_image`
        (uint8/uint16 scaled to [0, 1], floats must be in [0, 1], no NaN).
    sigma : float >= 0, the Gaussian smoothing (0 = none).
    low, high : float, ``0 <= low <= high``, thresholds on the gradient magnitude in
        intensity per pixel.  The defaults equal scikit-image's 0.1 / 0.2 on its unnormalised
        Sobel (8 times the derivative).  A unit step smoothed with ``sigma`` peaks at
        ``1 / (sqrt(2 pi) sigma)``, about 0.4 for ``sigma = 1``.

    **image_options : ``max_value``, ``channel_order``, ``nonfinite`` of
        :func:`minifeat.io.as_image`.

    Returns
    -------
    edges : bool ndarray of shape (H, W); the one-pixel border is always False (so an image
        smaller than 3x3, or a constant one, has no edges).
    """
    image = as_image(image, keep_float64=True, **image_options)
    xp = get_array_module(image)
    sigma = check_positive(sigma, "sigma", allow_zero=True)
    low = check_positive(low, "low", allow_zero=True)
    high = check_positive(high, "high", allow_zero=True)
    if low > high:
        raise ValueError(f"`low` must be <= `high`, got low={low} and high={high}")
    if min(image.shape) < 3:
        return xp.zeros(image.shape, dtype=bool)
    smoothed = gaussian_smooth(xp, image, sigma)
    gx, gy = gradient_sobel(smoothed)
    mag = xp.sqrt(gx * gx + gy * gy)
    nms = _non_maximum_suppression(xp, gx, gy, mag)
    return _hysteresis(xp, nms > low, nms > high)
