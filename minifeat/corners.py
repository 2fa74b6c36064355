"""Corner responses (Harris, Shi-Tomasi) and peak picking with a minimum distance.

Shape legend: an image or response is ``(H, W)``; corner coordinates are ``(K, 2)`` integer
``(row, col)`` rows, strongest first, on the backend of the input.

The structure tensor (Harris & Stephens 1988) of image ``I`` with Sobel derivatives
``Ix, Iy`` (true-derivative units, see :mod:`minifeat.edges`) and a Gaussian window ``w``::

    A = w * Ix^2,   B = w * Iy^2,   C = w * Ix Iy        M = [[A, C], [C, B]]

Harris:      R = det M - k (trace M)^2 = A B - C^2 - k (A + B)^2
Shi-Tomasi:  R = lambda_min(M) = (A + B)/2 - sqrt(((A - B)/2)^2 + C^2)   (Shi & Tomasi 1994)
"""
from __future__ import annotations

import numpy

from minidl.backend import get_array_module, to_host
from minifeat.edges import gradient_sobel
from minifeat.separable import check_positive, gaussian_smooth, max_filter
from minifeat.io import as_array2d, as_image

__all__ = ["structure_tensor", "corner_harris", "corner_shi_tomasi", "corner_peaks"]


def structure_tensor(image, sigma: float = 1.0, **image_options):
    """The windowed structure tensor ``(A, B, C) = (w*Ix^2, w*Iy^2, w*IxIy)``, each (H, W),
    float32 (float64 for a float64 image).

    ``image``: a file path or an array read by :func:`minifeat.io.as_image` (its options
    ``max_value``, ``channel_order``, ``nonfinite`` pass through ``image_options``).
    ``sigma`` (> 0) is the standard deviation of the Gaussian window ``w``.
    """
    image = as_image(image, keep_float64=True, **image_options)
    xp = get_array_module(image)
    sigma = check_positive(sigma, "sigma")
    gx, gy = gradient_sobel(image)
    return (gaussian_smooth(xp, gx * gx, sigma), gaussian_smooth(xp, gy * gy, sigma),
            gaussian_smooth(xp, gx * gy, sigma))


def corner_harris(image, k: float = 0.05, sigma: float = 1.0, **image_options):
    """Harris corner response ``det M - k trace(M)^2`` of shape (H, W).

    Parameters
    ----------
    image : file path or array (H, W) / (H, W, 3|4), read by :func:`minifeat.io.as_image`
        (uint8/uint16 scaled to [0, 1], floats must be in [0, 1], no NaN).
    k : float in [0, 0.25): sensitivity; larger k suppresses edges more (typically 0.04-0.06).
    sigma : float > 0: the Gaussian integration window.
    **image_options : ``max_value``, ``channel_order``, ``nonfinite`` of ``as_image``.

    Returns
    -------
    response : ndarray of shape (H, W), float64 for a float64 image, else float32.  Corners are
        large positive, edges negative, flat regions near zero.  Pick corners with
        :func:`corner_peaks`.
    """
    k = check_positive(k, "k", allow_zero=True)
    if k >= 0.25:
        raise ValueError(f"`k` must be in [0, 0.25), got {k}")
    a, b, c = structure_tensor(image, sigma, **image_options)
    tr = a + b
    return a * b - c * c - k * tr * tr


def corner_shi_tomasi(image, sigma: float = 1.0, **image_options):
    """Shi-Tomasi ("good features to track") response: the smaller eigenvalue of the
    structure tensor, shape (H, W) (dtype as :func:`corner_harris`), always >= 0 up to
    rounding.  ``image`` and ``image_options`` as :func:`corner_harris`."""
    a, b, c = structure_tensor(image, sigma, **image_options)
    xp = get_array_module(a)
    half_diff = (a - b) * 0.5
    return (a + b) * 0.5 - xp.sqrt(half_diff * half_diff + c * c)


def _local_maxima(xp, response, min_distance: int, threshold: float, border: int):
    """Boolean map of pixels equal to the maximum of their (2d+1)^2 box, above ``threshold``,
    at least ``border`` pixels inside the image."""
    H, W = response.shape
    peaks = (response == max_filter(xp, response, (min_distance, min_distance))) & \
        (response > threshold)
    if border > 0:
        inner = xp.zeros((H, W), dtype=bool)
        if H > 2 * border and W > 2 * border:
            inner[border:H - border, border:W - border] = True
        peaks = peaks & inner
    return peaks


def _greedy_spacing(coords: numpy.ndarray, min_distance: float) -> numpy.ndarray:
    """Host: indices of ``coords`` (sorted strongest first) kept so that no two kept points
    are within ``min_distance`` (Chebyshev distance) of each other, stronger points winning.

    The candidate set is small (already local maxima), so a loop over candidates with one
    vectorized distance row each is cheap.
    """
    n = len(coords)
    suppressed = numpy.zeros(n, dtype=bool)
    keep = []
    for i in range(n):
        if suppressed[i]:
            continue
        keep.append(i)
        if i + 1 < n:
            d = numpy.abs(coords[i + 1:] - coords[i]).max(axis=1)
            suppressed[i + 1:] |= d <= min_distance
    return numpy.asarray(keep, dtype=numpy.int64)


def corner_peaks(response, min_distance: int = 1, threshold_abs: float | None = None,
                 threshold_rel: float | None = None, num_peaks: int | None = None,
                 exclude_border: bool | int = True):
    """Corner coordinates: local maxima of ``response`` at least ``min_distance`` apart.

    1. On the device: a pixel is a candidate when it equals the maximum of its
       ``(2 min_distance + 1)^2`` box (separable max filter over shifted slices) and exceeds
       ``max(threshold_abs, threshold_rel * response.max())``.
    2. On the host (the few candidates only): sorted by strength, greedily drop any candidate
       within ``min_distance`` (Chebyshev distance) of a stronger kept one; this removes the
       duplicates of plateaus.  Then keep the ``num_peaks`` strongest.

    Parameters
    ----------
    response : ndarray of shape (H, W), e.g. from :func:`corner_harris`.
    min_distance : int >= 1.
    threshold_abs : float or None (None: no absolute threshold beyond ``> min(response)``).
    threshold_rel : float in [0, 1] or None.
    num_peaks : int >= 1 or None (all).
    exclude_border : bool or int; True excludes ``min_distance`` pixels at each border.

    Returns
    -------
    coords : int64 ndarray of shape (K, 2), ``(row, col)`` rows, strongest first, on the
        backend of ``response``.
    """
    xp, response = as_array2d(response, "response")
    if isinstance(min_distance, bool) or not isinstance(min_distance, (int, numpy.integer)) \
            or min_distance < 1:
        raise ValueError(f"`min_distance` must be an int >= 1, got {min_distance!r}")
    if threshold_rel is not None and not 0 <= threshold_rel <= 1:
        raise ValueError(f"`threshold_rel` must be in [0, 1] or None, got {threshold_rel!r}")
    if num_peaks is not None and (isinstance(num_peaks, bool) or
                                  not isinstance(num_peaks, (int, numpy.integer)) or num_peaks < 1):
        raise ValueError(f"`num_peaks` must be an int >= 1 or None, got {num_peaks!r}")
    if exclude_border is True:
        border = int(min_distance)
    elif exclude_border is False:
        border = 0
    elif isinstance(exclude_border, (int, numpy.integer)) and exclude_border >= 0:
        border = int(exclude_border)
    else:
        raise ValueError(f"`exclude_border` must be a bool or an int >= 0, got {exclude_border!r}")

    if min(response.shape) < 3:  # too small for a local maximum with neighbours: none
        return xp.zeros((0, 2), dtype=xp.int64)
    threshold = float(response.min())
    if threshold_abs is not None:
        threshold = max(threshold, float(threshold_abs))
    if threshold_rel is not None:
        threshold = max(threshold, float(threshold_rel) * float(response.max()))

    peaks = _local_maxima(xp, response, int(min_distance), threshold, border)
    rows, cols = xp.nonzero(peaks)
    strength = to_host(response[rows, cols])
    coords = numpy.stack([to_host(rows), to_host(cols)], axis=1).astype(numpy.int64)
    order = numpy.argsort(-strength, kind="stable")
    coords = coords[order]
    coords = coords[_greedy_spacing(coords, min_distance)] if len(coords) else coords
    if num_peaks is not None:
        coords = coords[:num_peaks]
    return xp.asarray(coords.reshape(-1, 2))
