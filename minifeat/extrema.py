"""Scale-space extrema of the DoG: 3x3x3 detection and quadratic refinement (Lowe 2004,
sec. 3-4; IPOL "Anatomy of SIFT" sec. 3.1-3.3), vectorized over all candidates of an octave.

Shapes: ``dog`` is (S + 2, H, W) (an array, or a :class:`LazyDoG` over the Gaussians);
candidates are index arrays ``s, r, c`` of length K with ``1 <= s <= S``.  Thresholds are on images scaled to [0, 1].
"""
from __future__ import annotations

import numpy

from minidl import backend as B
from minidl import parallel

__all__ = ["LazyDoG", "find_extrema", "refine_extrema", "localize_extrema", "extrema_tests",
           "IMG_BORDER"]

IMG_BORDER = 5  # candidates closer than this to the octave's border are ignored (OpenCV)


class LazyDoG:
    """The DoG of a Gaussian stack ``g`` (S + 3, H, W), never stored whole: indexing
    ``dog[s, r, c]`` gives ``g[s + 1, r, c] - g[s, r, c]`` (the same float operation as the
    stored DoG, so the same bits), :meth:`rows` a strip of all layers.  Accepted wherever this
    module takes a ``dog``; it saves the (S + 2) H W array (80 bytes per input pixel in the
    upsampled octave) and a pass over it."""

    def __init__(self, gaussians):
        self.gaussians = gaussians
        n, H, W = gaussians.shape
        self.shape = (n - 1, H, W)
        self.dtype = gaussians.dtype

    def __getitem__(self, idx):
        s, r, c = idx
        g = self.gaussians
        return g[s + 1, r, c] - g[s, r, c]

    def rows(self, r0: int, r1: int):
        """``dog[:, r0:r1, :]`` (S + 2, r1 - r0, W), a new contiguous array."""
        g = self.gaussians[:, r0:r1]
        return _xp(self).subtract(g[1:], g[:-1])


def _xp(dog):
    return B.get_array_module(dog.gaussians if isinstance(dog, LazyDoG) else dog)


def find_extrema(dog, threshold: float, border: int = IMG_BORDER):
    """Pixels of DoG layers ``1..S`` that are >= (<=) all 26 neighbours and above
    ``threshold`` in absolute value.  The 27-max is separable: max over 3 along each axis.

    ``dog``: (S + 2, H, W), an array or a :class:`LazyDoG`.  On the CPU the image is processed
    in strips of rows (with a one-row halo) so that the temporaries stay in cache, the strips
    side by side on the host threads (:mod:`minidl.parallel`; each strip's result is its own,
    so any thread count gives the same candidates in the same order); on a GPU in one piece.

    Returns int arrays ``(s, r, c)`` of the candidates (indices into ``dog``).
    """
    xp = _xp(dog)
    n, H, W = dog.shape
    if H <= 2 * border or W <= 2 * border or n < 3:
        z = xp.zeros(0, xp.int64)
        return z, z, z
    lo, hi = border, H - border  # rows that may hold extrema
    like = dog.gaussians if isinstance(dog, LazyDoG) else dog
    host = B.backend_of(like).name == "numpy"
    rows = max(8, (1 << 18) // (n * W)) if host else hi - lo
    # centre > t  <=>  centre >= nextafter(t, +inf) in the DoG's dtype, so the threshold joins
    # the neighbourhood max (min) as one more operand: 5 passes instead of 7.  As a full array,
    # not a scalar: NumPy's maximum against a broadcast scalar is 4x slower (no SIMD loop).
    t = numpy.float32(threshold).astype(dog.dtype)
    up = numpy.nextafter(t, numpy.array(numpy.inf, dtype=dog.dtype))
    upper = xp.full((n - 2, min(rows, hi - lo) * W), up, dtype=dog.dtype)
    lower = -upper
    starts = list(range(lo, hi, rows))
    found = [None] * len(starts)

    def work(i0, i1):
        for i in range(i0, i1):
            r0 = starts[i]
            r1 = min(hi, r0 + rows)
            block = (dog.rows(r0 - 1, r1 + 1) if isinstance(dog, LazyDoG)
                     else dog[:, r0 - 1:r1 + 1, :])
            s, r, c = _extrema_block(block, upper, lower, border, xp, mask_columns=not host)
            found[i] = (s, r + r0, c)

    parallel.parallel_for(len(starts), work, nbytes=n * H * W * 4, like=like)
    if len(found) == 1:
        return found[0]
    return tuple(xp.concatenate([f[i] for f in found]) for i in range(3))


def _extrema_block(block, upper, lower, border, xp, mask_columns: bool = False):
    """Extrema of the centre rows of ``block`` (S + 2, h + 2, W) that are >= ``upper`` or
    <= ``lower`` (arrays (S, >= h W)): indices (s, r - 1, c).  ``mask_columns``: drop the
    border columns in the mask, before the one compaction (a device synchronises for each
    compaction; on the host dropping them from the few hits is cheaper).

    Each layer's rows are one flat run of (h + 2) W samples: the neighbours along x are at
    +-1, along y at +-W, so every pass is one long 1-D loop per layer (per-row loops cost as
    much again on the CPU).  Samples of columns 0 and W - 1 see wrapped neighbours from the
    next or previous row; they are inside the border and dropped.
    """
    S2, h2, W = block.shape
    flat = block.reshape(S2, h2 * W)
    L = (h2 - 2) * W - 2  # centre samples (flat positions W + 1 .. (h2 - 1) W - 2)
    mx = _max3_flat(flat, L, xp.maximum)
    mn = _max3_flat(flat, L, xp.minimum)
    centre = flat[1:-1, W + 1:W + 1 + L]
    xp.maximum(mx, upper[:, :L], out=mx)
    xp.minimum(mn, lower[:, :L], out=mn)
    hit = centre >= mx
    hit |= centre <= mn
    if mask_columns:
        col = (xp.arange(W + 1, W + 1 + L) % W).astype(xp.int32)
        hit &= ((col >= border) & (col < W - border))[None, :]
    # nonzero of the contiguous mask, flattened (fast), then the few hits are decoded and the
    # columns within ``border`` of the edges dropped
    q = xp.flatnonzero(hit.reshape(-1))
    s = q // L
    q = q - s * L + (W + 1)  # flat position in the layer
    r = q // W
    c = q - r * W
    if mask_columns:
        return s + 1, r - 1, c
    keep = (c >= border) & (c < W - border)
    return s[keep] + 1, r[keep] - 1, c[keep]


def _max3_flat(flat, L: int, op):
    """``op`` over the 3 x 3 x 3 neighbourhood of the centre samples of ``flat`` (S + 2, n)
    (layers of rows of width W, flattened): (S, L) for positions W + 1 .. W + L."""
    W = (flat.shape[1] - L - 2) // 2
    a = op(flat[:-2], flat[1:-1])            # scales
    op(a, flat[2:], out=a)
    n = a.shape[1]
    b = op(a[:, :n - 2 * W], a[:, W:n - W])  # rows
    op(b, a[:, 2 * W:], out=b)
    c = op(b[:, :L], b[:, 1:L + 1])          # columns
    op(c, b[:, 2:L + 2], out=c)
    return c


def _derivatives(dog, s, r, c):
    """Gradient (K, 3) and Hessian entries of D at integer points, order (x, y, s)."""
    at = _sampler(dog, s, r, c)
    v = at(0, 0, 0)
    xp_, xm = at(0, 0, 1), at(0, 0, -1)
    yp, ym = at(0, 1, 0), at(0, -1, 0)
    sp, sm = at(1, 0, 0), at(-1, 0, 0)
    dx = (xp_ - xm) * 0.5
    dy = (yp - ym) * 0.5
    ds = (sp - sm) * 0.5
    dxx = xp_ + xm - 2 * v
    dyy = yp + ym - 2 * v
    dss = sp + sm - 2 * v
    dxy = (at(0, 1, 1) - at(0, 1, -1) - at(0, -1, 1) + at(0, -1, -1)) * 0.25
    dxs = (at(1, 0, 1) - at(1, 0, -1) - at(-1, 0, 1) + at(-1, 0, -1)) * 0.25
    dys = (at(1, 1, 0) - at(1, -1, 0) - at(-1, 1, 0) + at(-1, -1, 0)) * 0.25
    return v, (dx, dy, ds), (dxx, dyy, dss, dxy, dxs, dys)


def _sampler(dog, s, r, c):
    """``at(i, j, k)`` = ``dog[s + i, r + j, c + k]`` (K,), read from the flat array at
    precomputed flat positions (3-array fancy indexing costs several times more).
    A :class:`LazyDoG` reads two Gaussians and subtracts, as the stored DoG was made."""
    n, H, W = dog.shape
    lazy = isinstance(dog, LazyDoG)
    a = dog.gaussians if lazy else dog
    if not a.flags.c_contiguous:  # a strided view: index it as it is
        return lambda i, j, k: dog[s + i, r + j, c + k]
    flat = a.reshape(-1)
    base = (s * H + r) * W + c
    HW = H * W

    def at(i, j, k):  # flat[q], not xp.take: no Python wrappers around it (a small call)
        q = base + (i * HW + j * W + k)
        if lazy:
            return flat[q + HW] - flat[q]
        return flat[q]
    return at


def _solve_sym3(g, h, xp):
    """``-H^{-1} g`` for symmetric 3x3 H given by its 6 entries, via the adjugate (batched).
    Returns offsets (ox, oy, os) and a mask of well-conditioned systems."""
    gx, gy, gs = (a.astype(xp.float64) for a in g)
    a, e, i, b, c, f = (t.astype(xp.float64) for t in h)  # dxx dyy dss dxy dxs dys
    # H = [[a, b, c], [b, e, f], [c, f, i]]
    A = e * i - f * f
    Bc = c * f - b * i
    C = b * f - c * e
    E = a * i - c * c
    F = b * c - a * f
    I = a * e - b * b
    det = a * A + b * Bc + c * C
    ok = xp.abs(det) > 1e-30
    inv = 1.0 / xp.where(ok, det, 1.0)
    ox = -(A * gx + Bc * gy + C * gs) * inv
    oy = -(Bc * gx + E * gy + F * gs) * inv
    os_ = -(C * gx + F * gy + I * gs) * inv
    return ox, oy, os_, ok


def refine_extrema(dog, s, r, c, n_intervals: int, contrast_threshold: float = 0.04,
                   edge_threshold: float = 10.0, max_steps: int = 5, border: int = IMG_BORDER,
                   max_offset: float = 0.5):
    """Quadratic (Taylor) refinement of candidates, then contrast and edge rejection.

    Each step solves ``H x = -g``; when some ``|x_i| >= max_offset`` (0.5: OpenCV; IPOL and
    scikit-image take 0.6, which keeps the extrema that lie half-way between two samples and
    would otherwise oscillate between them and be dropped) the sample moves by ``round(x)``
    and the fit is redone, at most ``max_steps`` times (IPOL Alg. 5).  Kept:
    ``|D(x)| * S >= contrast_threshold`` with ``D(x) = D + g.x / 2`` and the Hessian ratio test
    ``tr^2 / det < (r + 1)^2 / r`` (``det > 0``), ``r = edge_threshold`` (Lowe sec. 4.1).
    The two halves are :func:`localize_extrema` and :func:`extrema_tests`.

    Returns a dict of arrays: ``s, r, c`` (int, final samples), ``ox, oy, os`` (offsets),
    ``contrast`` (signed D(x)).
    """
    xp = _xp(dog)
    if B.backend_of(dog.gaussians if isinstance(dog, LazyDoG) else dog).name != "numpy":
        # all K candidates to the end, then the one compaction (a device syncs for each)
        out = _localize_fixed(dog, s, r, c, n_intervals, max_steps, border, xp, compact=False,
                              max_offset=max_offset)
        ok = extrema_tests(out, n_intervals, contrast_threshold, edge_threshold)
        return _compact(out, out.pop("step"), ok[0] & ok[1], max_steps, xp)
    out = localize_extrema(dog, s, r, c, n_intervals, max_steps, border, max_offset)
    contrast_ok, edge_ok = extrema_tests(out, n_intervals, contrast_threshold, edge_threshold)
    good = xp.nonzero(contrast_ok & edge_ok)[0]
    return {k: v[good] for k, v in out.items() if k not in _HESSIAN}


def _compact(out, step, good, max_steps: int, xp, keep_hessian: bool = False):
    """The candidates that converged (``step < max_steps``) and are ``good``, in the host
    path's order: by the step they converged at, then by index (a stable sort)."""
    valid = good & (step < max_steps)
    order = xp.argsort(xp.where(valid, step, max_steps), kind="stable")
    order = order[:int(xp.count_nonzero(valid))]
    drop = () if keep_hessian else _HESSIAN
    return {k: v[order] for k, v in out.items() if k not in drop}


_HESSIAN = ("dxx", "dyy", "dxy")


def localize_extrema(dog, s, r, c, n_intervals: int, max_steps: int = 5,
                     border: int = IMG_BORDER, max_offset: float = 0.5):
    """The refinement half of :func:`refine_extrema`: every candidate whose quadratic fit
    converged inside the octave, before the contrast and edge tests.

    Returns a dict of arrays: ``s, r, c, ox, oy, os, contrast`` as :func:`refine_extrema`, and
    the spatial Hessian entries ``dxx, dyy, dxy`` (float64) at the final samples."""
    xp = _xp(dog)
    n, H, W = dog.shape
    S = n_intervals
    if B.backend_of(dog.gaussians if isinstance(dog, LazyDoG) else dog).name != "numpy":
        return _localize_fixed(dog, s, r, c, S, max_steps, border, xp, max_offset=max_offset)
    keep = {k: [] for k in ("s", "r", "c", "ox", "oy", "os")}
    for _ in range(max_steps):
        if s.shape[0] == 0:
            break
        _, g, h = _derivatives(dog, s, r, c)
        ox, oy, os_, ok = _solve_sym3(g, h, xp)
        lim = max_offset
        conv = ok & (xp.abs(ox) < lim) & (xp.abs(oy) < lim) & (xp.abs(os_) < lim)
        for k, v in (("s", s), ("r", r), ("c", c), ("ox", ox), ("oy", oy), ("os", os_)):
            keep[k].append(v[conv])
        move = ok & ~conv & (xp.abs(ox) < 1e6) & (xp.abs(oy) < 1e6) & (xp.abs(os_) < 1e6)
        s = s[move] + xp.rint(os_[move]).astype(s.dtype)
        r = r[move] + xp.rint(oy[move]).astype(r.dtype)
        c = c[move] + xp.rint(ox[move]).astype(c.dtype)
        inside = ((s >= 1) & (s <= S) & (r >= border) & (r < H - border)
                  & (c >= border) & (c < W - border))
        s, r, c = s[inside], r[inside], c[inside]
    if not keep["s"]:
        z = xp.zeros(0, xp.int64)
        zf = xp.zeros(0, xp.float64)
        return dict(s=z, r=z, c=z, ox=zf, oy=zf, os=zf, contrast=zf, dxx=zf, dyy=zf, dxy=zf)
    return _finish_localized(dog, {k: xp.concatenate(v) for k, v in keep.items()}, xp)


def _finish_localized(dog, out, xp):
    """Add ``contrast`` and the spatial Hessian at the final samples ``out['s', 'r', 'c']``."""
    v, g, h = _derivatives(dog, out["s"], out["r"], out["c"])
    out["contrast"] = (v.astype(xp.float64) + 0.5 * (g[0] * out["ox"] + g[1] * out["oy"]
                                                     + g[2] * out["os"]))
    for k, i in zip(_HESSIAN, (0, 1, 3)):
        out[k] = h[i].astype(xp.float64)
    return out


def _localize_fixed(dog, s, r, c, S: int, max_steps: int, border: int, xp,
                    compact: bool = True, max_offset: float = 0.5):
    """:func:`localize_extrema` without a compaction: every step runs on all K candidates
    (those that converged or left keep their last sample, and their results are masked), so
    the shapes never depend on the data and a GPU never waits for a count.  One compaction at
    the end, in the host path's order (by the step a candidate converged at, then by its
    index: a stable sort); ``compact=False``: none, all K returned with ``step`` (int64, the
    step each converged at, ``max_steps`` for none).  Same values: the same gathers and
    float64 arithmetic per candidate."""
    K = int(s.shape[0])
    if K == 0:
        z = xp.zeros(0, xp.int64)
        zf = xp.zeros(0, xp.float64)
        return dict(s=z, r=z, c=z, ox=zf, oy=zf, os=zf, contrast=zf, dxx=zf, dyy=zf, dxy=zf,
                    **({} if compact else {"step": z}))
    alive = xp.ones(K, dtype=bool)
    step = xp.full(K, max_steps, dtype=xp.int64)  # the step each one converged at (or none)
    out = {k: xp.zeros(K, xp.float64) for k in ("ox", "oy", "os")}
    final = [s, r, c]
    for i in range(max_steps):
        _, g, h = _derivatives(dog, s, r, c)
        ox, oy, os_, ok = _solve_sym3(g, h, xp)
        lim = max_offset
        conv = alive & ok & (xp.abs(ox) < lim) & (xp.abs(oy) < lim) & (xp.abs(os_) < lim)
        for k, v in (("ox", ox), ("oy", oy), ("os", os_)):
            out[k] = xp.where(conv, v, out[k])
        final = [xp.where(conv, a, f) for a, f in zip((s, r, c), final)]
        step = xp.where(conv, i, step)
        move = (alive & ok & ~conv & (xp.abs(ox) < 1e6) & (xp.abs(oy) < 1e6)
                & (xp.abs(os_) < 1e6))
        # the offsets of the others may be anything (inf, nan): 0 before rounding
        ns, nr, nc = (a + xp.rint(xp.where(move, d, 0.0)).astype(a.dtype)
                      for a, d in ((s, os_), (r, oy), (c, ox)))
        inside = ((ns >= 1) & (ns <= S) & (nr >= border) & (nr < dog.shape[1] - border)
                  & (nc >= border) & (nc < dog.shape[2] - border))
        alive = move & inside
        s, r, c = (xp.where(alive, a, b) for a, b in ((ns, s), (nr, r), (nc, c)))
    res = _finish_localized(dog, dict(s=final[0], r=final[1], c=final[2], **out), xp)
    if not compact:
        res["step"] = step
        return res
    return _compact(res, step, xp.ones(K, dtype=bool), max_steps, xp, keep_hessian=True)


def extrema_tests(localized, n_intervals: int, contrast_threshold: float = 0.04,
                  edge_threshold: float = 10.0):
    """Boolean masks ``(contrast_ok, edge_ok)`` over :func:`localize_extrema`'s candidates:
    ``|D(x)| * S >= contrast_threshold``, and ``det > 0`` with ``tr^2 r < (r + 1)^2 det`` on
    the 2x2 spatial Hessian (a blob, not an edge: both principal curvatures alike)."""
    xp = B.get_array_module(localized["contrast"])
    dxx, dyy, dxy = (localized[k] for k in _HESSIAN)
    tr = dxx + dyy
    det = dxx * dyy - dxy * dxy
    contrast_ok = xp.abs(localized["contrast"]) * n_intervals >= contrast_threshold
    edge_ok = (det > 0) & (tr * tr * edge_threshold < (edge_threshold + 1) ** 2 * det)
    return contrast_ok, edge_ok
