"""Descriptor matching and robust homography estimation.

* :func:`match_descriptors` -- brute-force nearest neighbours by matrix products (chunked),
  Lowe's ratio test (Lowe 2004, sec. 7.1), optional cross-check (mutual nearest neighbours:
  ``ratio=None, cross_check=True``; both: ``ratio=0.8, cross_check=True``, the advice of
  ``minifeat.presets.MATCHING["accurate"]``, which bought 5 points of precision for 2-3 % of
  the correct matches on ``benchmarks/eval_sift.py``'s warps; see docs/sift-accuracy.md).
* :func:`homography_dlt` -- normalised direct linear transform (Hartley & Zisserman, Alg. 4.2).
* :func:`ransac_homography` -- RANSAC (Fischler & Bolles 1981) with all hypotheses scored at
  once; seeded, returns the refitted homography and the inlier mask.

Homographies map ``[x, y, 1]`` of the first image to the second (column vectors, ``H @ p``).
"""
from __future__ import annotations

import numpy

from minidl import backend as B

__all__ = ["match_descriptors", "homography_dlt", "ransac_homography", "apply_homography"]


def _require_finite_rows(xp, a, message: str) -> None:
    """ValueError ``message.format(bad=..., n=...)`` when rows of ``a`` (N, D) hold a NaN or
    inf: ``bad`` such rows of ``n``."""
    finite = xp.isfinite(a).all(axis=1)
    if not bool(finite.all()):
        n = int(a.shape[0])
        raise ValueError(message.format(bad=n - int(finite.sum()), n=n))


def _sq_dists(a, b, xp):
    aa = (a * a).sum(axis=1)[:, None]
    bb = (b * b).sum(axis=1)[None, :]
    return xp.maximum(aa + bb - 2.0 * (a @ b.T), 0.0)


def _two_nearest(a, b, xp, chunk):
    """Indices and distances of the nearest and second nearest rows of b, for each row of a."""
    n = int(a.shape[0])
    i1, d1, d2 = [], [], []
    for s in range(0, n, chunk):
        D = _sq_dists(a[s:s + chunk], b, xp)
        j = xp.argmin(D, axis=1)
        rows = xp.arange(D.shape[0])
        best = D[rows, j]
        D[rows, j] = xp.inf
        second = D.min(axis=1) if D.shape[1] > 1 else xp.full(best.shape, xp.inf)
        i1.append(j)
        d1.append(best)
        d2.append(second)
    return xp.concatenate(i1), xp.sqrt(xp.concatenate(d1)), xp.sqrt(xp.concatenate(d2))


def match_descriptors(desc1, desc2, *, ratio: float | None = 0.8, cross_check: bool = False,
                      max_distance: float | None = None, chunk: int = 2048):
    """Match rows of ``desc1`` (N1, D) to rows of ``desc2`` (N2, D) by Euclidean distance.
    Descriptors must be finite (a row with a NaN or inf is a ValueError naming the argument).

    Parameters
    ----------
    ratio : keep a match when ``d1 < ratio * d2`` (nearest vs second nearest); None: off
    cross_check : keep only mutual nearest neighbours
    max_distance : drop matches farther than this
    chunk : rows of ``desc1`` per distance block (bounds memory to chunk x N2)

    Returns
    -------
    matches : int array (M, 2) of ``(i1, i2)``;  distances : float array (M,)
    """
    xp = B.get_array_module(desc1, desc2)
    for name, d in (("desc1", desc1), ("desc2", desc2)):
        if d.ndim != 2:
            raise ValueError(f"`{name}` must be 2-D (N, D), got shape {tuple(d.shape)}")
    if desc1.shape[1] != desc2.shape[1]:
        raise ValueError("descriptor lengths differ: `desc1` has D="
                         f"{desc1.shape[1]}, `desc2` has D={desc2.shape[1]}")
    if ratio is not None and not 0 < ratio <= 1:
        raise ValueError(f"`ratio` must be in (0, 1], got {ratio!r}")
    for name, d in (("desc1", desc1), ("desc2", desc2)):
        # a NaN row has NaN distances, which no test rejects: it would silently match nothing
        _require_finite_rows(xp, d, f"`{name}` has {{bad}} row(s) with a NaN or inf value (of "
                             "{n}); expected finite descriptors")
    n1, n2 = int(desc1.shape[0]), int(desc2.shape[0])
    if n1 == 0 or n2 == 0:
        return xp.zeros((0, 2), xp.int64), xp.zeros(0, xp.float32)
    a, b = desc1.astype(xp.float32), desc2.astype(xp.float32)
    j, d1, d2 = _two_nearest(a, b, xp, chunk)
    keep = xp.ones(n1, dtype=bool)
    if ratio is not None:
        keep &= (d1 < ratio * d2) | ((n2 == 1) & (d1 >= 0))
    if max_distance is not None:
        keep &= d1 <= max_distance
    if cross_check:
        back, _, _ = _two_nearest(b, a, xp, chunk)
        keep &= back[j] == xp.arange(n1)
    i = xp.nonzero(keep)[0]
    return xp.stack([i, j[i]], axis=1), d1[i].astype(xp.float32)


def apply_homography(H, pts):
    """Map points (N, 2) with a 3x3 homography; returns (N, 2)."""
    xp = B.get_array_module(H, pts)
    p = pts.astype(xp.float64)
    q = p @ H[:, :2].T + H[:, 2]
    return q[:, :2] / q[:, 2:3]


def _normaliser(p, xp):
    """Similarity T with T p centred at 0 and mean distance sqrt(2) (Hartley)."""
    m = p.mean(axis=0)
    d = xp.sqrt(((p - m) ** 2).sum(axis=1)).mean()
    s = xp.sqrt(2.0) / xp.maximum(d, 1e-12)
    T = xp.zeros((3, 3), xp.float64)
    T[0, 0] = s
    T[1, 1] = s
    T[0, 2] = -s * m[0]
    T[1, 2] = -s * m[1]
    T[2, 2] = 1.0
    return T


def _dlt_rows(p, q, xp):
    """The 2 equations per correspondence of ``q ~ H p``; p, q: (..., N, 2) -> (..., 2N, 9)."""
    x, y = p[..., 0], p[..., 1]
    u, v = q[..., 0], q[..., 1]
    o, z = xp.ones_like(x), xp.zeros_like(x)
    r1 = xp.stack([-x, -y, -o, z, z, z, u * x, u * y, u], axis=-1)
    r2 = xp.stack([z, z, z, -x, -y, -o, v * x, v * y, v], axis=-1)
    return xp.concatenate([r1, r2], axis=-2)


def homography_dlt(src, dst):
    """Least-squares homography from N >= 4 correspondences, normalised DLT (H&Z Alg. 4.2).

    src, dst : (N, 2) -> H (3, 3) with ``H[2, 2] = 1``.
    """
    xp = B.get_array_module(src, dst)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or src.shape[0] < 4:
        raise ValueError("`src` and `dst` must both have shape (N, 2) with N >= 4, got "
                         f"{tuple(src.shape)} and {tuple(dst.shape)}")
    src, dst = src.astype(xp.float64), dst.astype(xp.float64)
    T1, T2 = _normaliser(src, xp), _normaliser(dst, xp)
    p = src @ T1[:2, :2].T + T1[:2, 2]
    q = dst @ T2[:2, :2].T + T2[:2, 2]
    _, _, vt = xp.linalg.svd(_dlt_rows(p, q, xp))
    Hn = vt[-1].reshape(3, 3)
    H = xp.linalg.inv(T2) @ Hn @ T1
    return H / H[2, 2]


def ransac_homography(src, dst, *, threshold: float = 3.0, max_trials: int = 2000,
                      seed: int = 0, min_inliers: int = 4):
    """Robust homography: RANSAC over minimal 4-point samples, then a DLT refit on inliers.

    All ``max_trials`` hypotheses are solved in one batched SVD and scored at once by the
    reprojection error ``|H p - q| < threshold`` (pixels).  Samples are drawn on the host with
    ``numpy.random.default_rng(seed)``, so results repeat across backends.

    ``src``, ``dst`` : float arrays (N, 2) of ``(x, y)`` points, same N, all finite: a point
    with a NaN or inf coordinate is a ValueError naming the argument and the count (drop such
    points first, e.g. ``keep = isfinite(src).all(1) & isfinite(dst).all(1)``).

    Returns ``(H, inliers)``: H (3, 3) float64, or None when fewer than ``min_inliers`` agree;
    inliers : bool array (N,).
    """
    xp = B.get_array_module(src, dst)
    for name, pts in (("src", src), ("dst", dst)):
        if pts.ndim != 2 or pts.shape[1] != 2:
            raise ValueError(f"ransac_homography: `{name}` must be (N, 2) points, got shape "
                             f"{tuple(pts.shape)}")
    if src.shape[0] != dst.shape[0]:
        raise ValueError(f"ransac_homography: `src` and `dst` must have the same number of "
                         f"points, got {int(src.shape[0])} and {int(dst.shape[0])}")
    for name, pts in (("src", src), ("dst", dst)):
        _require_finite_rows(xp, pts, f"ransac_homography: `{name}` has {{bad}} point(s) with a "
                             "NaN or inf coordinate (of {n}); expected finite points: drop them "
                             "first")
    n = int(src.shape[0])
    if n < 4:
        return None, xp.zeros(n, dtype=bool)
    src, dst = src.astype(xp.float64), dst.astype(xp.float64)
    T1, T2 = _normaliser(src, xp), _normaliser(dst, xp)
    p = src @ T1[:2, :2].T + T1[:2, 2]
    q = dst @ T2[:2, :2].T + T2[:2, 2]
    rng = numpy.random.default_rng(seed)
    idx = numpy.argsort(rng.random((max_trials, n)), axis=1)[:, :4] if n <= 64 else \
        _sample4(rng, n, max_trials)
    idx = B._backend_for_xp(xp).asarray(idx)
    A = _dlt_rows(p[idx], q[idx], xp)                  # (T, 8, 9)
    _, _, vt = xp.linalg.svd(A)
    Hn = vt[:, -1, :].reshape(-1, 3, 3)
    Hs = xp.linalg.inv(T2)[None] @ Hn @ T1[None]       # (T, 3, 3)
    ph = xp.concatenate([src, xp.ones((n, 1))], axis=1)
    proj = xp.einsum("tij,nj->tni", Hs, ph)
    w = proj[..., 2]
    ok_w = xp.abs(w) > 1e-12
    w = xp.where(ok_w, w, 1.0)
    err = ((proj[..., 0] / w - dst[:, 0]) ** 2 + (proj[..., 1] / w - dst[:, 1]) ** 2)
    inl = ok_w & (err < threshold * threshold)
    best = int(xp.argmax(inl.sum(axis=1)))
    mask = inl[best]
    for _ in range(2):  # refit on inliers, then re-score once more
        if int(mask.sum()) < max(4, min_inliers):
            return None, mask
        H = homography_dlt(src[mask], dst[mask])
        e = apply_homography(H, src) - dst
        mask = (e * e).sum(axis=1) < threshold * threshold
    if int(mask.sum()) < max(4, min_inliers):
        return None, mask
    return H, mask


def _sample4(rng, n, trials):
    """``trials`` x 4 distinct indices in [0, n)."""
    out = numpy.empty((trials, 4), numpy.int64)
    out[:, 0] = rng.integers(0, n, trials)
    for k in range(1, 4):
        c = rng.integers(0, n - k, trials)
        prev = numpy.sort(out[:, :k], axis=1)
        for j in range(k):  # shift past the already chosen (sorted) indices
            c = c + (c >= prev[:, j])
        out[:, k] = c
    return out
