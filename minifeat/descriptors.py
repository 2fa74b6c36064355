"""SIFT descriptors (Lowe 2004, sec. 6; IPOL "Anatomy of SIFT" sec. 4.2), vectorized over
keypoints and laid out exactly like OpenCV's: 4 x 4 spatial cells x 8 orientation bins,
``descriptor[(i * 4 + j) * 8 + k]`` for cell row ``i`` (along the keypoint's rotated y axis),
cell column ``j`` and orientation bin ``k``.

Each sample of the rotated square patch (side ``5 * 3 * scale`` octave pixels, i.e. 4 cells
plus the half cells that interpolation reaches) adds its gradient magnitude, weighted by a
Gaussian of sigma = 2 cells, to the 2 x 2 x 2 neighbouring (row, column, orientation) bins
(trilinear interpolation).  Then: L2 normalise, clamp at 0.2, normalise again.
"""
from __future__ import annotations

import math

from minidl import backend as B

__all__ = ["sift_descriptors", "normalize_descriptors", "rootsift"]

D = 4               # cells per side
N_ORI = 8           # orientation bins per cell
HIST_WIDTH = 3.0    # cell side in keypoint scales
MAG_THR = 0.2
INT_FACTOR = 512.0
_CHUNK_SAMPLES = {"numpy": 1 << 16}  # cache-sized blocks on the CPU; big ones elsewhere
_CHUNK_DEFAULT = 1 << 21


def sift_descriptors(grad, x, y, angle, scale):
    """Raw (un-normalised) 128-D histograms, float64 array (K, 128).

    Parameters
    ----------
    grad : :class:`minifeat.filters.GradientSampler` of the keypoints' Gaussian image (H, W)
    x, y : float arrays (K,), positions in octave pixels (rounded to the nearest pixel, as OpenCV)
    angle : float array (K,), keypoint angle in degrees (OpenCV convention)
    scale : float array (K,), blur of the keypoint in octave pixels
    """
    xp = B.get_array_module(grad.image)
    H, W = grad.shape
    K = int(x.shape[0])
    out = xp.zeros((K, D * D * N_ORI), xp.float64)
    if K == 0:
        return out
    rot = 360.0 - angle.astype(xp.float64)
    rot = xp.where(xp.abs(rot - 360.0) < 1e-4, 0.0, rot)
    hist_width = HIST_WIDTH * scale.astype(xp.float64)
    radius = xp.rint(hist_width * math.sqrt(2.0) * (D + 1) * 0.5)
    radius = xp.minimum(radius, math.sqrt(H * H + W * W)).astype(xp.int64)
    cos_t = xp.cos(rot * (math.pi / 180.0)) / hist_width
    sin_t = xp.sin(rot * (math.pi / 180.0)) / hist_width
    px = xp.rint(x).astype(xp.int64)
    py = xp.rint(y).astype(xp.int64)

    chunk = _CHUNK_SAMPLES.get(B.backend_of(grad.image).name, _CHUNK_DEFAULT)
    # Only the bounding box of the rotated patch (half side 2.5 cells) can hold samples; chunks
    # of keypoints with similar boxes waste little of the square window they share.
    box = xp.ceil((D + 1) * 0.5 * hist_width * (xp.abs(xp.cos(rot * (math.pi / 180.0)))
                                                + xp.abs(xp.sin(rot * (math.pi / 180.0)))))
    reach = xp.minimum(radius, box.astype(xp.int64))
    order = xp.argsort(reach)
    radius_h = B.to_host(reach[order])
    k0 = 0
    while k0 < K:
        R = int(radius_h[min(K - 1, k0 + 63)]) if K - k0 > 64 else int(radius_h[-1])
        P = (2 * R + 1) ** 2
        step = max(1, min(K - k0, chunk // P))
        R = int(radius_h[k0 + step - 1])
        P = (2 * R + 1) ** 2
        idx = order[k0:k0 + step]
        _accumulate(out, idx, R, xp, grad, px, py, cos_t, sin_t, radius, rot, H, W)
        k0 += step
    return out


def _accumulate(out, idx, R, xp, grad, px, py, cos_t, sin_t, radius, rot, H, W):
    f32 = xp.float32
    kk = int(idx.shape[0])
    side = 2 * R + 1
    off = xp.arange(-R, R + 1, dtype=f32)
    di = xp.repeat(off, side)[None, :]   # row offset i
    dj = xp.tile(off, side)[None, :]     # column offset j
    ct, st = cos_t[idx].astype(f32), sin_t[idx].astype(f32)
    pyk, pxk = py[idx].astype(xp.int32), px[idx].astype(xp.int32)
    radk = radius[idx].astype(f32)
    # 1) which samples of the (kk, side^2) window lie in the patch and inside the image
    r_rot = dj * st[:, None] + di * ct[:, None]
    c_rot = dj * ct[:, None] - di * st[:, None]
    yy = pyk[:, None] + di
    xx = pxk[:, None] + dj
    valid = ((xp.abs(r_rot - 0.0) < D / 2 + 0.5) & (xp.abs(c_rot) < D / 2 + 0.5)
             & (yy > 0) & (yy < H - 1) & (xx > 0) & (xx < W - 1)
             & (xp.abs(di) <= radk[:, None]) & (xp.abs(dj) <= radk[:, None]))
    q = xp.nonzero(valid.reshape(-1))[0]  # about half the square is outside the patch
    # 2) recompute everything on the kept samples only, from (keypoint, offset) indices
    kq = q // (side * side)
    pq = q - kq * (side * side)
    i = (pq // side).astype(f32) - R
    j = (pq % side).astype(f32) - R
    ctq, stq = ct[kq], st[kq]
    c_rot = j * ctq - i * stq
    r_rot = j * stq + i * ctq
    flat = (pyk[kq] + i.astype(xp.int32)) * W + (pxk[kq] + j.astype(xp.int32))
    mag_s, ori_s = grad.sample(flat)
    m = mag_s * xp.exp((c_rot * c_rot + r_rot * r_rot) * f32(-1.0 / (D * D * 0.5)))
    rbin = r_rot + f32(D / 2 - 0.5)
    cbin = c_rot + f32(D / 2 - 0.5)
    obin = (ori_s - rot[idx].astype(f32)[kq]) * f32(N_ORI / 360.0)
    r0 = xp.floor(rbin)
    c0 = xp.floor(cbin)
    o0 = xp.floor(obin)
    fr, fc, fo = rbin - r0, cbin - c0, obin - o0
    r0 = r0.astype(xp.int32) + 1
    c0 = c0.astype(xp.int32) + 1
    o0 = o0.astype(xp.int32) % N_ORI
    do = (o0 + 1) % N_ORI - o0
    base = kq.astype(xp.int32) * ((D + 2) * (D + 2) * N_ORI) + (r0 * (D + 2) + c0) * N_ORI + o0
    idxs, vals = [], []
    for dr, wr in ((0, 1 - fr), (1, fr)):
        mr = m * wr
        for dc, wc in ((0, 1 - fc), (1, fc)):
            cell = base + (dr * (D + 2) + dc) * N_ORI
            wrc = mr * wc
            v1 = wrc * fo
            idxs += [cell, cell + do]
            vals += [wrc - v1, v1]
    h = xp.bincount(xp.concatenate(idxs), weights=xp.concatenate(vals),
                    minlength=kk * (D + 2) * (D + 2) * N_ORI)
    h = h.reshape(kk, D + 2, D + 2, N_ORI)[:, 1:-1, 1:-1, :].reshape(kk, -1)
    out[idx] = h


def normalize_descriptors(desc, *, opencv_scale: bool = False):
    """Normalise, clamp each element at 0.2, renormalise (Lowe 2004, sec. 6.1).

    Returns float32 unit vectors (K, 128), or with ``opencv_scale=True`` OpenCV's values:
    ``round(min(512 v, 255))`` (integers in [0, 255] stored as float32).
    """
    xp = B.get_array_module(desc)
    desc = desc.astype(xp.float64)
    nrm = xp.sqrt((desc * desc).sum(axis=1, keepdims=True))
    desc = xp.minimum(desc, nrm * MAG_THR)
    nrm = xp.sqrt((desc * desc).sum(axis=1, keepdims=True))
    desc = desc / xp.maximum(nrm, 1.1920929e-07)
    if opencv_scale:
        desc = xp.clip(xp.rint(desc * INT_FACTOR), 0, 255)
    return desc.astype(xp.float32)


def rootsift(desc):
    """RootSIFT (Arandjelovic & Zisserman 2012): L1-normalise, then element-wise square root.
    The result has unit L2 norm, so Euclidean matching on it is Hellinger matching on SIFT."""
    xp = B.get_array_module(desc)
    d = xp.maximum(desc.astype(xp.float32), 0)
    return xp.sqrt(d / xp.maximum(d.sum(axis=1, keepdims=True), 1e-12))
