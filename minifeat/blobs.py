"""Blob detectors over a scale space: Laplacian of Gaussian, Difference of Gaussians and
Determinant of Hessian, with scikit-image's conventions.

Shape legend: an image is ``(H, W)``; a scale cube is ``(S, H, W)`` for ``S`` sigmas; blobs are
``(K, 3)`` float rows ``(y, x, sigma)`` on the backend of the input, sorted by row then column.

Recipe (Lindeberg 1998, "Feature detection with automatic scale selection"):

1. a scale-normalised response per sigma (the normalisation makes responses of one blob
   comparable across scales, so the best scale is the arg-max):

   * LoG: ``-sigma^2 (Lxx + Lyy)`` (bright blobs are positive);
   * DoG: ``(G(sigma_i) - G(sigma_{i+1})) / (ratio - 1) ~ -sigma_i^2 Laplacian``;
   * DoH: ``sigma^4 (Lxx Lyy - Lxy^2)`` (bright and dark blobs alike);

2. 3-D local maxima of the cube over its 3x3x3 neighbourhood, above ``threshold`` (and
   ``threshold_rel * cube.max()``): a separable max filter, on the device;
3. pruning on the host (few blobs): a blob overlapping a larger kept one by more than
   ``overlap`` (area of the lens / area of the smaller disk) is dropped.

For a bright disk of radius ``r`` all three peak at ``sigma = r / sqrt(2)``, so the blob radius
is ``sqrt(2) * sigma``.  (scikit-image's ``blob_doh`` uses box filters whose sigma is about the
radius; ours uses exact Gaussian derivatives, so DoH also has radius ``sqrt(2) * sigma``.)
"""
from __future__ import annotations

import math

import numpy

from minidl.backend import get_array_module, to_host
from minifeat.io import as_image
from minifeat.separable import check_positive, gaussian_derivative, gaussian_smooth, max_filter

__all__ = ["blob_log", "blob_dog", "blob_doh", "blob_overlap", "prune_blobs"]


# --------------------------------------------------------------------------- scales

def _sigma_list(min_sigma, max_sigma, num_sigma, log_scale) -> numpy.ndarray:
    min_sigma = check_positive(min_sigma, "min_sigma")
    max_sigma = check_positive(max_sigma, "max_sigma")
    if max_sigma < min_sigma:
        raise ValueError(f"`max_sigma` must be >= `min_sigma`, got {max_sigma} < {min_sigma}")
    if isinstance(num_sigma, bool) or not isinstance(num_sigma, (int, numpy.integer)) \
            or num_sigma < 1:
        raise ValueError(f"`num_sigma` must be an int >= 1, got {num_sigma!r}")
    if log_scale:
        return numpy.logspace(math.log10(min_sigma), math.log10(max_sigma), int(num_sigma))
    return numpy.linspace(min_sigma, max_sigma, int(num_sigma))


# --------------------------------------------------------------------------- peaks + pruning

def _check_common(threshold, threshold_rel, overlap):
    if threshold is None and threshold_rel is None:
        raise ValueError("`threshold` and `threshold_rel` cannot both be None")
    if threshold is not None:
        threshold = float(threshold)
    if threshold_rel is not None and not 0 <= threshold_rel <= 1:
        raise ValueError(f"`threshold_rel` must be in [0, 1] or None, got {threshold_rel!r}")
    if not 0 <= overlap <= 1:
        raise ValueError(f"`overlap` must be in [0, 1], got {overlap!r}")
    return threshold


def _scale_space_peaks(xp, cube, sigmas, threshold, threshold_rel, exclude_border, overlap):
    """3-D maxima of ``cube`` (S, H, W) -> pruned (K, 3) ``(y, x, sigma)`` blobs on ``xp``."""
    t = -math.inf if threshold is None else threshold
    if threshold_rel is not None:
        t = max(t, float(threshold_rel) * float(cube.max()))
    peaks = (cube == max_filter(xp, cube, (1, 1, 1))) & (cube > t)
    b = int(exclude_border)
    if b > 0:
        S, H, W = cube.shape
        inner = xp.zeros((H, W), dtype=bool)
        if H > 2 * b and W > 2 * b:
            inner[b:H - b, b:W - b] = True
        peaks = peaks & inner[None]
    s, y, x = (to_host(a) for a in xp.nonzero(peaks))
    blobs = numpy.stack([y, x, numpy.asarray(sigmas)[s]], axis=1).astype(numpy.float64)
    blobs = prune_blobs(blobs.reshape(-1, 3), overlap)
    order = numpy.lexsort((blobs[:, 1], blobs[:, 0]))
    return xp.asarray(blobs[order])


def blob_overlap(d, r1, r2):
    """Area of the lens of two disks (radii ``r1``, ``r2``, centres ``d`` apart) divided by the
    area of the smaller disk; host NumPy arrays, broadcast.  1 when one disk holds the other,
    0 when they are apart."""
    d, r1, r2 = (numpy.asarray(v, dtype=numpy.float64) for v in (d, r1, r2))
    small = numpy.minimum(r1, r2)
    with numpy.errstate(divide="ignore", invalid="ignore"):
        c1 = numpy.clip((d**2 + r1**2 - r2**2) / (2 * d * r1), -1, 1)
        c2 = numpy.clip((d**2 + r2**2 - r1**2) / (2 * d * r2), -1, 1)
        k = (-d + r1 + r2) * (d + r1 - r2) * (d - r1 + r2) * (d + r1 + r2)
        lens = r1**2 * numpy.arccos(c1) + r2**2 * numpy.arccos(c2) - 0.5 * numpy.sqrt(
            numpy.abs(k))
        frac = lens / (math.pi * small**2)
    frac = numpy.where(d <= numpy.abs(r1 - r2), 1.0, frac)
    return numpy.where(d >= r1 + r2, 0.0, frac)


def prune_blobs(blobs, overlap: float = 0.5):
    """Drop blobs that overlap a larger kept blob by more than ``overlap`` (host NumPy).

    ``blobs`` is (K, 3) ``(y, x, sigma)`` with radius ``sqrt(2) sigma``.  Greedy from the largest
    sigma down (like non-maximum suppression): a blob survives when its overlap with every
    *surviving* larger blob is ``<= overlap``; a dropped blob drops nothing.  scikit-image
    visits overlapping pairs in KD-tree order, so there a blob that is dropped later may
    already have dropped a smaller one: in chains of overlapping maxima it keeps fewer blobs
    (on detect_blob.png at half size, LoG: 98 there, 151 here, every one of its blobs within
    3 px of one of ours).
    """
    blobs = numpy.asarray(blobs, dtype=numpy.float64).reshape(-1, 3)
    if len(blobs) < 2:
        return blobs
    order = numpy.argsort(-blobs[:, 2], kind="stable")
    blobs = blobs[order]
    r = math.sqrt(2) * blobs[:, 2]
    keep = numpy.ones(len(blobs), dtype=bool)
    for i in range(len(blobs)):
        if not keep[i] or i + 1 == len(blobs):
            continue
        rest = slice(i + 1, None)
        d = numpy.hypot(blobs[rest, 0] - blobs[i, 0], blobs[rest, 1] - blobs[i, 1])
        near = keep[rest] & (d < r[i] + r[rest])
        if near.any():
            ov = blob_overlap(d[near], r[i], r[rest][near])
            idx = numpy.nonzero(near)[0][ov > overlap] + i + 1
            keep[idx] = False
    return blobs[keep]


# --------------------------------------------------------------------------- detectors

def _read_image(image, image_options):
    """``(xp, image)`` through the input contract; image None when smaller than 3x3 (too small
    for a blob: the result is empty)."""
    image = as_image(image, keep_float64=True, **image_options)
    xp = get_array_module(image)
    return xp, (None if min(image.shape) < 3 else image)


def blob_log(image, min_sigma: float = 1.0, max_sigma: float = 50.0, num_sigma: int = 10,
             threshold: float | None = 0.2, overlap: float = 0.5, log_scale: bool = False,
             threshold_rel: float | None = None, exclude_border: int = 0, **image_options):
    """Bright blobs by the scale-normalised Laplacian of Gaussian ``-sigma^2 (Lxx + Lyy)``.

    Parameters
    ----------
    image : file path or array (H, W) / (H, W, 3|4), bright blobs on a dark background (invert
        for dark ones), read by :func:`minifeat.io.as_image` (uint8/uint16 scaled to [0, 1],
        floats must be in [0, 1], no NaN; its options pass through ``image_options``).
    min_sigma, max_sigma : float > 0, the range of Gaussian sigmas.
    num_sigma : int >= 1, how many sigmas (linear steps, or log steps with ``log_scale``).
    threshold : float or None, minimum response (in image intensity units).
    overlap : float in [0, 1], pruning limit (see :func:`prune_blobs`).
    threshold_rel : float in [0, 1] or None, minimum response relative to the cube maximum.
    exclude_border : int >= 0, ignore maxima this close to the image border.

    Returns
    -------
    blobs : float64 ndarray of shape (K, 3), rows ``(y, x, sigma)``; radius ``sqrt(2) sigma``.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:64, :64]
    >>> disk = ((yy - 32) ** 2 + (xx - 30) ** 2 <= 10 ** 2).astype(float)
    >>> b = blob_log(disk, min_sigma=3, max_sigma=12, num_sigma=19)
    >>> b[:, :2].tolist(), round(float(b[0, 2]) * 2 ** 0.5)
    ([[32.0, 30.0]], 10)
    """
    xp, image = _read_image(image, image_options)
    sigmas = _sigma_list(min_sigma, max_sigma, num_sigma, log_scale)
    threshold = _check_common(threshold, threshold_rel, overlap)
    if image is None:
        return xp.zeros((0, 3), dtype=xp.float64)
    cube = xp.stack([-(s * s) * (gaussian_derivative(xp, image, s, 2, 0, "reflect") +
                                 gaussian_derivative(xp, image, s, 0, 2, "reflect"))
                     for s in sigmas])
    return _scale_space_peaks(xp, cube, sigmas, threshold, threshold_rel, exclude_border, overlap)


def blob_dog(image, min_sigma: float = 1.0, max_sigma: float = 50.0, sigma_ratio: float = 1.6,
             threshold: float | None = 0.5, overlap: float = 0.5,
             threshold_rel: float | None = None, exclude_border: int = 0, **image_options):
    """Bright blobs by the Difference of Gaussians, a fast approximation of :func:`blob_log`.

    Sigmas are ``min_sigma * sigma_ratio**i`` for ``i = 0..k`` with
    ``k = int(log(max_sigma / min_sigma) / log(sigma_ratio) + 1)``; the response at scale
    ``sigma_i`` is ``(G(sigma_i) * I - G(sigma_{i+1}) * I) / (sigma_ratio - 1)``, which tends to
    ``-sigma_i^2 Laplacian`` as the ratio tends to 1 (Lowe 2004, sec. 3).

    Parameters are those of :func:`blob_log`, with ``sigma_ratio > 1`` in place of
    ``num_sigma``/``log_scale``.  Returns (K, 3) ``(y, x, sigma)``; radius ``sqrt(2) sigma``.
    """
    xp, image = _read_image(image, image_options)
    min_sigma = check_positive(min_sigma, "min_sigma")
    max_sigma = check_positive(max_sigma, "max_sigma")
    if max_sigma < min_sigma:
        raise ValueError(f"`max_sigma` must be >= `min_sigma`, got {max_sigma} < {min_sigma}")
    sigma_ratio = check_positive(sigma_ratio, "sigma_ratio")
    if sigma_ratio <= 1:
        raise ValueError(f"`sigma_ratio` must be > 1, got {sigma_ratio}")
    threshold = _check_common(threshold, threshold_rel, overlap)
    if image is None:
        return xp.zeros((0, 3), dtype=xp.float64)
    k = int(math.log(max_sigma / min_sigma) / math.log(sigma_ratio) + 1)
    sigmas = min_sigma * sigma_ratio ** numpy.arange(k + 1)
    blurred = [gaussian_smooth(xp, image, float(s), mode="reflect") for s in sigmas]
    cube = xp.stack([(blurred[i] - blurred[i + 1]) for i in range(k)]) / (sigma_ratio - 1)
    return _scale_space_peaks(xp, cube, sigmas[:k], threshold, threshold_rel, exclude_border,
                              overlap)


def blob_doh(image, min_sigma: float = 1.0, max_sigma: float = 30.0, num_sigma: int = 10,
             threshold: float | None = 0.01, overlap: float = 0.5, log_scale: bool = False,
             threshold_rel: float | None = None, exclude_border: int = 0, **image_options):
    """Blobs by the scale-normalised determinant of the Hessian ``sigma^4 (Lxx Lyy - Lxy^2)``
    (Bay et al. 2008 approximate it with box filters; here exact Gaussian derivatives).

    Finds bright and dark blobs alike.  Parameters and return value as :func:`blob_log`;
    radius ``sqrt(2) sigma``.
    """
    xp, image = _read_image(image, image_options)
    sigmas = _sigma_list(min_sigma, max_sigma, num_sigma, log_scale)
    threshold = _check_common(threshold, threshold_rel, overlap)
    if image is None:
        return xp.zeros((0, 3), dtype=xp.float64)
    layers = []
    for s in sigmas:
        lxx = gaussian_derivative(xp, image, s, 0, 2, "reflect")
        lyy = gaussian_derivative(xp, image, s, 2, 0, "reflect")
        lxy = gaussian_derivative(xp, image, s, 1, 1, "reflect")
        layers.append(s**4 * (lxx * lyy - lxy * lxy))
    cube = xp.stack(layers)
    return _scale_space_peaks(xp, cube, sigmas, threshold, threshold_rel, exclude_border, overlap)
