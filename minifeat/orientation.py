"""Dominant orientations of keypoints (Lowe 2004, sec. 5; IPOL "Anatomy of SIFT" sec. 4.1),
vectorized over keypoints: every keypoint's square window is gathered at once and the
36-bin histograms are built with one ``bincount``.

``grad`` is a :class:`minifeat.filters.GradientSampler` of the keypoints' Gaussian image
(H, W) (orientations in degrees); keypoints are K index arrays.
"""
from __future__ import annotations

from minidl import backend as B

__all__ = ["orientation_histograms", "dominant_orientations"]

N_BINS = 36
ORI_SIG_FCTR = 1.5      # Gaussian window sigma, in keypoint scales
ORI_RADIUS = 3 * ORI_SIG_FCTR
ORI_PEAK_RATIO = 0.8
_CHUNK_SAMPLES = {"numpy": 1 << 16}  # cache-sized blocks on the CPU; big ones elsewhere
_CHUNK_DEFAULT = 1 << 21


def orientation_histograms(grad, r, c, scale, n_bins: int = N_BINS):
    """Smoothed orientation histograms (K, n_bins).

    For keypoint k (pixel ``(r, c)``, blur ``scale`` in octave pixels) every pixel
    of the square of radius ``round(4.5 scale)`` adds ``mag * exp(-(i^2 + j^2) / (2 (1.5
    scale)^2))`` to bin ``round(ori * n_bins / 360) mod n_bins``; pixels off the image add
    nothing.  The histogram is then smoothed circularly with ``[1, 4, 6, 4, 1] / 16`` (OpenCV).
    """
    xp = B.get_array_module(grad.image)
    H, W = grad.shape
    K = int(r.shape[0])
    if K == 0:
        return xp.zeros((0, n_bins), xp.float32)
    radius = xp.rint(ORI_RADIUS * scale).astype(xp.int64)
    R = int(radius.max())
    off = xp.arange(-R, R + 1)
    di, dj = off[:, None] + 0 * off[None, :], 0 * off[:, None] + off[None, :]
    di, dj = di.ravel(), dj.ravel()  # (P,)
    P = int(di.shape[0])
    hists = []
    step = max(1, _CHUNK_SAMPLES.get(B.backend_of(grad.image).name, _CHUNK_DEFAULT) // P)
    for k0 in range(0, K, step):
        sl = slice(k0, min(K, k0 + step))
        kk = int(sl.stop - sl.start)
        yy = r[sl, None] + di[None, :]
        xx = c[sl, None] + dj[None, :]
        rad = radius[sl, None]
        valid = ((xp.abs(di)[None, :] <= rad) & (xp.abs(dj)[None, :] <= rad)
                 & (yy > 0) & (yy < H - 1) & (xx > 0) & (xx < W - 1))
        flat = xp.clip(yy, 0, H - 1) * W + xp.clip(xx, 0, W - 1)
        mag_s, ori_s = grad.sample(flat)
        sig = ORI_SIG_FCTR * scale[sl, None]
        w = xp.exp(-(di * di + dj * dj)[None, :] / (2.0 * sig * sig)) * mag_s
        w = xp.where(valid, w, 0.0)
        b = xp.rint(ori_s * (n_bins / 360.0)).astype(xp.int64) % n_bins
        b = b + (xp.arange(kk)[:, None] * n_bins)
        h = xp.bincount(b.ravel(), weights=w.ravel().astype(xp.float64),
                        minlength=kk * n_bins)
        hists.append(h.reshape(kk, n_bins))
    h = xp.concatenate(hists, axis=0)
    sm = ((xp.roll(h, 2, axis=1) + xp.roll(h, -2, axis=1)) * (1.0 / 16)
          + (xp.roll(h, 1, axis=1) + xp.roll(h, -1, axis=1)) * (4.0 / 16) + h * (6.0 / 16))
    return sm


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


