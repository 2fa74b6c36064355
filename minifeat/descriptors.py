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

import numpy

from minidl import backend as B
from minidl import parallel

__all__ = ["sift_descriptors", "descriptor_window_samples", "normalize_descriptors", "rootsift"]

D = 4               # cells per side
N_ORI = 8           # orientation bins per cell
HIST_WIDTH = 3.0    # cell side in keypoint scales
MAG_THR = 0.2
INT_FACTOR = 512.0
_CHUNK_SAMPLES = {"numpy": 3 << 15}  # cache-sized blocks on the CPU (measured); big ones elsewhere
_CHUNK_DEFAULT = 1 << 21
# with several host threads each working on its own keypoints, the GIL between the many
# small NumPy calls of a block limits, not the cache: fewer, larger blocks (docs/design/sift.md)
_CHUNK_SAMPLES_THREADED = 1 << 19


def sift_descriptors(grad, x, y, angle, scale, *, d: int = D, n_ori: int = N_ORI,
                     hist_width: float = HIST_WIDTH, chunk_samples: int | None = None):
    """Raw (un-normalised) histograms, float64 array (K, d * d * n_ori) (128 by default).

    Parameters
    ----------
    grad : :class:`minifeat.gradients.GradientSampler` of the keypoints' Gaussian image (H, W)
    x, y : float arrays (K,), positions in octave pixels (rounded to the nearest pixel, as OpenCV)
    angle : float array (K,), keypoint angle in degrees (OpenCV convention)
    scale : float array (K,), blur of the keypoint in octave pixels
    d, n_ori, hist_width : the geometry: cells per side, orientation bins per cell, cell side
        in keypoint scales (OpenCV's 4, 8, 3 by default)
    chunk_samples : window samples per block of keypoints processed together (None: sized
        for the backend and the host thread count); any value gives the same results

    A keypoint's histogram depends on that keypoint only, not on the others passed with it nor
    on the chunking: slices of keypoints may be described apart (in threads: see
    :meth:`GradientSampler.prepare`) and give the same bits.
    """
    for name, v in (("d", d), ("n_ori", n_ori)):
        if not (isinstance(v, (int, numpy.integer)) and v > 0):
            raise ValueError(f"`{name}` must be a positive int, got {v!r}")
    if not hist_width > 0:
        raise ValueError(f"`hist_width` must be positive, got {hist_width!r}")
    xp = B.get_array_module(grad.image)
    H, W = grad.shape
    K = int(x.shape[0])
    out = xp.zeros((K, d * d * n_ori), xp.float64)
    if K == 0:
        return out
    rot = 360.0 - angle.astype(xp.float64)
    rot = xp.where(xp.abs(rot - 360.0) < 1e-4, 0.0, rot)
    width = hist_width * scale.astype(xp.float64)
    radius = xp.minimum(_patch_radius(scale, d, hist_width),
                        math.sqrt(H * H + W * W)).astype(xp.int64)
    cos_t = xp.cos(rot * (math.pi / 180.0)) / width
    sin_t = xp.sin(rot * (math.pi / 180.0)) / width
    px = xp.rint(x).astype(xp.int64)
    py = xp.rint(y).astype(xp.int64)

    if chunk_samples is not None and (isinstance(chunk_samples, bool)
                                      or not isinstance(chunk_samples, int) or chunk_samples < 1):
        raise ValueError(f"sift_descriptors: chunk_samples must be a positive int or None, got "
                         f"{chunk_samples!r}")
    chunk = _chunk_samples(grad.image) if chunk_samples is None else chunk_samples
    # Only the bounding box of the rotated patch (half side (d + 1) / 2 cells) can hold
    # samples; chunks of keypoints with similar boxes waste little of the square they share.
    box = xp.ceil((d + 1) * 0.5 * width * (xp.abs(xp.cos(rot * (math.pi / 180.0)))
                                           + xp.abs(xp.sin(rot * (math.pi / 180.0)))))
    reach = xp.minimum(radius, box.astype(xp.int64))
    order = xp.argsort(reach)
    radius_h = B.to_host(reach[order])
    acc = _Accumulator(xp, grad, px, py, cos_t, sin_t, rot, d, n_ori)
    k0 = 0
    while k0 < K:
        R = int(radius_h[min(K - 1, k0 + 63)]) if K - k0 > 64 else int(radius_h[-1])
        step = max(1, min(K - k0, chunk // (2 * R + 1) ** 2))
        R = int(radius_h[k0 + step - 1])
        idx = order[k0:k0 + step]
        out[idx] = acc(idx, R)
        k0 += step
    return out


def _chunk_samples(image) -> int:
    """Window samples per block of keypoints: cache-sized on one CPU thread, larger when
    minidl.parallel runs several (the results do not depend on it: each keypoint's histogram
    is its own)."""
    name = B.backend_of(image).name
    if name != "numpy":
        return _CHUNK_DEFAULT
    return _CHUNK_SAMPLES_THREADED if parallel.get_num_threads() > 1 else _CHUNK_SAMPLES[name]


def descriptor_window_samples(scale, *, d: int = D, hist_width: float = HIST_WIDTH) -> int:
    """At most the gradient samples :func:`sift_descriptors` reads for keypoints of blur
    ``scale`` (K,) in octave pixels: a square of the patch's radius each (for
    :meth:`GradientSampler.expect`)."""
    return int(B.to_host(((2 * _patch_radius(scale, d, hist_width) + 1) ** 2).sum()))


def _patch_radius(scale, d: int = D, hist_width: float = HIST_WIDTH):
    """OpenCV's loop radius: half the diagonal of the (d + 1)-cell patch, float64 (K,)."""
    xp = B.get_array_module(scale)
    return xp.rint(hist_width * scale.astype(xp.float64) * math.sqrt(2.0) * (d + 1) * 0.5)


# The 8 weight moments m * prod(f_a for a in S), S a subset of {r, c, o} (f_a: the sample's
# fraction along axis a), at index 4 [r in S] + 2 [c in S] + [o in S]: so that the sums,
# moment-major, split axis by axis as (2, 2, 2, ...) (see _Accumulator.__call__).
_MOMENTS = ("", "o", "c", "co", "r", "ro", "rc", "rco")


class _Accumulator:
    """The histograms of chunks of one call's keypoints (:meth:`__call__`), with that call's
    scratch buffers: calls in several threads share nothing.

    The rotated coordinates on the square window (kk, side, side) are outer sums; gradients
    are cut out of the image as window blocks (:meth:`GradientSampler.windows`: magnitude 0 off
    the image and on its outer ring, where OpenCV skips samples); the samples inside the patch
    are picked with one boolean mask (per-keypoint terms are folded into the square before it
    is compressed, or rebuilt from the counts; never gathered per sample); the trilinear
    interpolation sums 8 weight moments at one bin per sample (:meth:`_sums`) and moves the
    corners on the small histograms.  float32 throughout, as OpenCV.  (OpenCV's loop bound
    ``radius`` needs no test: a sample inside the patch has ``|i|, |j| <= radius`` anyway.)
    """

    def __init__(self, xp, grad, px, py, cos_t, sin_t, rot, d: int, n_ori: int):
        f32 = xp.float32
        self.xp, self.grad, self.px, self.py = xp, grad, px, py
        self.d, self.n_ori = int(d), int(n_ori)
        self.ct, self.st = cos_t.astype(f32), sin_t.astype(f32)
        # orientation bin relative to the keypoint's angle, + n_ori to keep it positive
        self.o_shift = (rot * (n_ori / 360.0) - n_ori).astype(f32)
        self.host = B.backend_of(grad.image).name == "numpy"
        self.F = self.X = self.indptr = None  # CPU scratch (see _sums), grown on demand

    def __call__(self, idx, R: int):
        """float32 (kk, d * d * n_ori) histograms of the keypoints ``idx`` (int array (kk,))
        whose patches fit in the square of radius ``R``."""
        xp, d, n_ori = self.xp, self.d, self.n_ori
        f32 = xp.float32
        kk = int(idx.shape[0])
        nb = (d + 2) * (d + 2) * n_ori
        half = f32(d / 2 + 0.5)  # the patch is |r|, |c| < half (in cells)
        off = xp.arange(-R, R + 1, dtype=f32)
        ct, st = self.ct[idx], self.st[idx]
        # 1) rotated coordinates on the square (kk, side, side) as outer sums, r = i ct + j st,
        # c = j ct - i st, shifted by half: then floor(r) = rbin + 1 >= 0 and the patch is
        # 0 < r, c < 2 half.  Both as one complex64 rc = r + 1j c = (i ct + half - 1j i st) +
        # (j st + 1j (j ct + half)): one broadcast pass and one compression for the pair (the
        # same bits as two real sums: a + (-b) is a - b).
        i_ct, i_st = off[None, :] * ct[:, None], off[None, :] * st[:, None]
        i_ct += half
        rows = xp.empty(i_ct.shape, xp.complex64)
        cols = xp.empty(i_ct.shape, xp.complex64)
        rows.real, rows.imag = i_ct, -i_st
        cols.real, cols.imag = i_st, i_ct
        rc = rows[:, :, None] + cols[:, None, :]
        # inside: both parts in (0, 2 half), tested on the contiguous float32 pairs; a sample
        # is in when both bytes of its pair of bools are 1
        ok = rc.view(f32) > 0
        ok &= rc.view(f32) < 2 * half
        valid = ok.view(xp.uint16) == 0x0101
        # 2) per-sample terms on the square, then the samples inside the patch compressed with
        # the mask.  Gradients come as window blocks (0 magnitude on the image's outer ring
        # and off the image: those add nothing).  The Gaussian weight exp(-(r^2 + c^2) /
        # (d^2 / 2)) is rotation invariant, exp(-(i^2 + j^2) a_k): an outer product.
        mag_w, ori_w = self.grad.windows(self.py[idx], self.px[idx], R)
        a = (ct * ct + st * st) * f32(-1.0 / (d * d * 0.5))
        g = xp.exp(off[None, :] * off[None, :] * a[:, None])
        mag_w *= g[:, :, None]
        mag_w *= g[:, None, :]
        ori_w *= f32(n_ori / 360.0)
        ori_w -= self.o_shift[idx][:, None, None]
        m = mag_w[valid]
        rc = rc[valid]
        rq, cq = rc.real, rc.imag
        oq = ori_w[valid]
        r0 = xp.floor(rq)
        c0 = xp.floor(cq)
        o0 = xp.floor(oq)
        fr, fc, fo = self._fractions((rq, r0), (cq, c0), (oq, o0))
        # One bin per sample, (keypoint, r0 + 1, c0 + 1, o0 mod n_ori), and the 8 moments of
        # the weights summed there; fewer passes over the samples than 8 corner weights and
        # bins.
        r0 *= f32((d + 2) * n_ori)  # exact: small integers
        r0 += c0 * f32(n_ori)
        base = r0.astype(xp.int32)
        o0 = o0.astype(xp.int32)
        if n_ori & (n_ori - 1) == 0:
            o0 &= n_ori - 1  # a power of 2: mod by a mask
        else:
            o0 %= n_ori
        base += o0
        base += _keypoint_offsets(xp, valid, nb)
        M = self._sums(m, fr, fc, fo, base, kk * nb).reshape(2, 2, 2, kk, d + 2, d + 2, n_ori)
        # 3) the trilinear corners, axis by axis (r, c, o), on the moment-major sums
        # (2r, 2c, 2o, kk, d + 2, d + 2, n_ori): weight (1 - f) stays, M_S - M_{S+a}, weight f
        # moves one bin along a, M_{S+a}.  Only bins 1..d are kept: bin b gets
        # (M_S - M_{S+a})[b] + M_{S+a}[b - 1].
        lo = M[0][:, :, :, 1:d + 1] - M[1][:, :, :, 1:d + 1]
        lo += M[1][:, :, :, :d]
        hi = lo[1][:, :, :, :d + 1]
        lo = lo[0][:, :, :, 1:d + 1] - hi[:, :, :, 1:]
        lo += hi[:, :, :, :d]
        h = lo[0] - lo[1]
        h += xp.roll(lo[1], 1, axis=3)
        return h.reshape(kk, d * d * n_ori)

    def _sums(self, m, fr, fc, fo, base, n_bins: int):
        """float32 (8, n_bins): at bin ``base[j]`` (int32 (N,)), the sums of ``m[j]`` times each
        moment of the fractions ``fr, fc, fo`` (float32 (N,)), in ``_MOMENTS``' order.

        On the CPU the 8 moments are computed as contiguous rows of a scratch F (8, N),
        transposed into a scratch X (N, 8) in one copy (strided writes of each column cost more
        than all the arithmetic), and one sparse product ``A @ X`` (``A[base[j], j] = m[j]``,
        SciPy's compressed-column kernel) adds each sample's 8 values to its bin in one pass:
        faster than 8 float32 ``add.at`` scatters, which stay on other backends (atomic adds on
        a GPU).  Both add in sample order, so that each bin's sum is the same either way.
        """
        xp = self.xp
        f32 = xp.float32
        n = int(m.shape[0])
        if not self.host:
            mr, mc = m * fr, m * fc
            mrc = mr * fc
            out = xp.zeros((len(_MOMENTS), n_bins), dtype=f32)
            for row, v in enumerate((m, m * fo, mc, mc * fo, mr, mr * fo, mrc, mrc * fo)):
                xp.add.at(out[row], base, v)
            return out
        import scipy.sparse

        F, X = self.F[:, :n], self.X[:n]
        numpy.multiply(fc, fo, out=F[3])
        numpy.multiply(fr, fo, out=F[5])
        numpy.multiply(fr, fc, out=F[6])
        numpy.multiply(F[6], fo, out=F[7])
        X[...] = F.T
        A = scipy.sparse.csc_matrix((m, base, self.indptr[:n + 1]), shape=(n_bins, n))
        # moment-major and contiguous: the corners are then moved with long inner loops
        return numpy.ascontiguousarray((A @ X).T)

    def _fractions(self, *pairs):
        """``q - floor(q)`` for the (q, floor) pairs along r, c, o; on the CPU written
        straight into the rows of the moment scratch F (see :meth:`_sums`)."""
        if not self.host:
            return tuple(q - q0 for q, q0 in pairs)
        n = int(pairs[0][0].shape[0])
        if self.F is None or self.F.shape[1] < n:
            cap = n + n // 4  # chunks differ a little in size: grow rarely
            self.F = numpy.empty((len(_MOMENTS), cap), numpy.float32)
            self.F[0] = 1
            self.X = numpy.empty((cap, len(_MOMENTS)), numpy.float32)
            self.indptr = numpy.arange(cap + 1, dtype=numpy.int32)
        return tuple(numpy.subtract(q, q0, out=self.F[row, :n])
                     for row, (q, q0) in zip((4, 2, 1), pairs))


def _keypoint_offsets(xp, valid, nb: int):
    """int32 ``k * nb`` for every sample compressed out of ``valid`` (kk, side, side), whose
    samples come keypoint after keypoint.  NumPy: ``repeat`` by the per-keypoint counts;
    elsewhere (CuPy's ``repeat`` takes no array of counts) a cumulative sum of steps at each
    keypoint's first sample.  (Both 6x faster than compressing a broadcast (kk, 1, 1) column.)"""
    kk = int(valid.shape[0])
    counts = xp.count_nonzero(valid.reshape(kk, -1), axis=1)
    if B.backend_of(valid).name == "numpy":
        return xp.repeat(xp.arange(0, kk * nb, nb, dtype=xp.int32), counts)
    n = int(counts.sum())
    starts = xp.cumsum(counts)[:-1]
    steps = xp.zeros(n, dtype=xp.int32)
    xp.add.at(steps, starts[starts < n], nb)  # repeated starts: keypoints without samples
    return xp.cumsum(steps, dtype=xp.int32)


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
