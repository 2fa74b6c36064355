"""Dominant orientations of keypoints (Lowe 2004, sec. 5; IPOL "Anatomy of SIFT" sec. 4.1),
vectorized over keypoints: the square windows of a chunk of keypoints are cut out of the
gradient maps as blocks (:meth:`~minifeat.gradients.GradientSampler.windows`), weighted by a
separable Gaussian, and the 36-bin histograms are built with one ``add.at``.

``grad`` is a :class:`minifeat.gradients.GradientSampler` of the keypoints' Gaussian image
(H, W) (orientations in degrees); keypoints are K index arrays.
"""
from __future__ import annotations

import numpy

from minidl import backend as B

__all__ = ["orientation_histograms", "dominant_orientations", "orientation_window_samples"]

N_BINS = 36
ORI_SIG_FCTR = 1.5      # Gaussian window sigma, in keypoint scales
ORI_RADIUS = 3 * ORI_SIG_FCTR
ORI_PEAK_RATIO = 0.8
_CHUNK_SAMPLES = {"numpy": 1 << 17}  # cache-sized blocks on the CPU (measured); big ones elsewhere
_CHUNK_DEFAULT = 1 << 21


def orientation_histograms(grad, r, c, scale, n_bins: int = N_BINS, *,
                           sig_factor: float = ORI_SIG_FCTR):
    """Smoothed orientation histograms (K, n_bins), float64.

    For keypoint k (pixel ``(r, c)``, blur ``scale`` in octave pixels) every pixel
    of the square of radius ``round(3 sig_factor scale)`` adds ``mag * exp(-(i^2 + j^2) /
    (2 (sig_factor scale)^2))`` to bin ``round(ori * n_bins / 360) mod n_bins`` (OpenCV:
    ``sig_factor`` 1.5, 36 bins); pixels off the image add nothing.  The histogram is then
    smoothed circularly with ``[1, 4, 6, 4, 1] / 16`` (OpenCV).  A keypoint's histogram depends
    on that keypoint only (not on the others passed with it, nor on the chunks): slices of
    keypoints may be done apart, in threads, with the same bits.
    """
    if not (isinstance(n_bins, (int, numpy.integer)) and n_bins > 0):
        raise ValueError(f"`n_bins` must be a positive int, got {n_bins!r}")
    if not sig_factor > 0:
        raise ValueError(f"`sig_factor` must be positive, got {sig_factor!r}")
    xp = B.get_array_module(grad.image)
    K = int(r.shape[0])
    if K == 0:
        return xp.zeros((0, n_bins), xp.float32)
    radius = xp.rint(3 * sig_factor * scale).astype(xp.int64)
    R = int(radius.max())
    side = 2 * R + 1
    hists = []
    step = max(1, _CHUNK_SAMPLES.get(B.backend_of(grad.image).name, _CHUNK_DEFAULT) // side ** 2)
    for k0 in range(0, K, step):
        sl = slice(k0, min(K, k0 + step))
        hists.append(_chunk(xp, grad, r[sl], c[sl], scale[sl], radius[sl], R, n_bins,
                            sig_factor))
    h = xp.concatenate(hists, axis=0)
    sm = ((xp.roll(h, 2, axis=1) + xp.roll(h, -2, axis=1)) * (1.0 / 16)
          + (xp.roll(h, 1, axis=1) + xp.roll(h, -1, axis=1)) * (4.0 / 16) + h * (6.0 / 16))
    return sm


def _chunk(xp, grad, r, c, scale, radius, R: int, n_bins: int, sig_factor: float):
    """Unsmoothed float64 histograms (kk, n_bins) of the keypoints ``(r, c)`` (int arrays
    (kk,)) whose windows fit in the square of radius ``R``."""
    f32 = xp.float32
    kk = int(r.shape[0])
    off = xp.arange(-R, R + 1)
    offf = off.astype(f32)
    # the Gaussian window and the square's bounds are separable: one (kk, side) factor
    rad = radius[:, None]
    inside = xp.abs(off)[None, :] <= rad
    sig = (sig_factor * scale[:, None]).astype(f32)
    a = f32(-0.5) / (sig * sig)
    gy = xp.where(inside, xp.exp(offf * offf * a), f32(0))
    # window blocks: magnitude 0 on the image's outer ring and off the image
    mag_s, ori_s = grad.windows(r, c, R)
    w = gy[:, :, None] * gy[:, None, :]
    w *= mag_s
    # bin round(ori * n / 360) is in 0..n (ori <= 360): slot n is folded onto 0 below
    # and each keypoint's bins are offset by k (n_bins + 1), added while still float32: exact
    # (integers below 2^24), one pass of int64 fewer
    ori_s *= f32(n_bins / 360.0)
    xp.rint(ori_s, out=ori_s)
    ori_s += (xp.arange(kk, dtype=f32) * f32(n_bins + 1))[:, None, None]
    b = ori_s.astype(xp.int64)
    acc = xp.zeros(kk * (n_bins + 1), f32)
    xp.add.at(acc, b.reshape(-1), w.reshape(-1))
    acc = acc.reshape(kk, n_bins + 1)
    h = acc[:, :n_bins].astype(xp.float64)
    h[:, 0] += acc[:, n_bins]
    return h


def orientation_window_samples(scale, *, sig_factor: float = ORI_SIG_FCTR) -> int:
    """Gradient samples :func:`orientation_histograms` reads for keypoints of blur ``scale``
    (K,): K squares of the largest radius (for :meth:`GradientSampler.expect`)."""
    if int(scale.shape[0]) == 0:
        return 0
    side = 2 * int(B.to_host(scale).max() * 3 * sig_factor + 0.5) + 1
    return int(scale.shape[0]) * side * side


def dominant_orientations(hist, peak_ratio: float = ORI_PEAK_RATIO):
    """Local maxima of each histogram that reach ``peak_ratio * max``, refined by a parabola
    through the peak and its neighbours.

    Returns ``(k, angle)``: for every orientation found, the keypoint index and the angle in
    degrees in OpenCV's convention ``angle = 360 - 360 * bin / n`` (0 when that is 360).
    """
    xp = B.get_array_module(hist)
    n = hist.shape[1]
    left = xp.roll(hist, 1, axis=1)
    right = xp.roll(hist, -1, axis=1)
    thr = hist.max(axis=1, keepdims=True) * peak_ratio
    peak = (hist > left) & (hist > right) & (hist >= thr)
    k, j = xp.nonzero(peak)
    hl, hc, hr = left[k, j], hist[k, j], right[k, j]
    den = hl - 2 * hc + hr
    binf = j + 0.5 * (hl - hr) / xp.where(den == 0, -1e-30, den)
    binf = xp.where(binf < 0, binf + n, xp.where(binf >= n, binf - n, binf))
    angle = 360.0 - (360.0 / n) * binf
    angle = xp.where(xp.abs(angle - 360.0) < 1e-4, 0.0, angle)
    return k, angle.astype(xp.float32)


