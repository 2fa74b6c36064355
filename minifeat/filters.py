"""Separable Gaussian filtering and image gradients, by hand.

Borders follow OpenCV's default ``BORDER_REFLECT_101`` (``dcb|abcd|cba``), which is
``mode='mirror'`` in ``scipy.ndimage`` and ``mode='reflect'`` in ``numpy.pad``.  The blur has
two engines: :func:`blur_gemm` (ours: banded Toeplitz blocks multiplied at BLAS speed) and the 1-D
correlation (``scipy.ndimage.correlate1d`` or its CuPy twin ``cupyx.scipy.ndimage.correlate1d``),
the only primitive borrowed.  :func:`gaussian_blur` picks the one that measures faster (see
there); kernels and their sizes are ours.
"""
from __future__ import annotations

import functools
import math
import threading

import numpy

from minidl import backend as B
from minidl import parallel

from .io import as_image, is_path

__all__ = ["gaussian_kernel1d", "gaussian_blur", "blur_gemm", "toeplitz_band",
           "image_gradients", "gradient_polar", "GradientSampler"]

# blur_gemm's block sizes: each BLAS call stays below OpenBLAS's threading threshold
# (m * n * k < 262144), so it runs single-threaded and cache-resident.
_GEMM_BLOCK = 16        # output pixels per Toeplitz block (16-64 measured; 16 best)
_GEMM_COLS = 128        # columns per matrix in the vertical pass
_GEMM_MNK = 200_000     # most multiply-adds per BLAS call
_STRIP_BYTES = 1 << 19  # row-filtered rows kept in cache between the two passes
_GEMM_MIN_PIXELS = 40_000  # smaller images: correlate1d is faster (call overheads)
# GradientSampler.windows builds the dense maps once the windows asked for cover more than
# 1 / _WINDOW_DENSE_RATIO of the image (a window sample read sparsely costs several dense pixels)
_WINDOW_DENSE_RATIO = 4


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
    image : ndarray of shape (H, W), float (any values: a linear filter, used on intermediate
        arrays too), or a file path, read by :func:`minifeat.io.as_image` (float32 in [0, 1])
    sigma : float > 0
    truncate : float, kernel radius in standard deviations
    out : ndarray of shape (H, W), optional, written in place and returned

    Returns
    -------
    ndarray of shape (H, W), same dtype (float32 for float32 input).
    """
    if is_path(image):
        image = as_image(image)
    xp = B.get_array_module(image)
    if image.ndim != 2:
        raise ValueError(f"`image` must be 2-D, got shape {tuple(image.shape)}")
    k = gaussian_kernel1d(sigma, truncate, xp=xp, dtype=image.dtype)
    r = int(k.shape[0]) // 2
    # Engine choice, measured (2-core AMD EPYC, OpenBLAS, float32, kernels of 11-25 taps):
    # blur_gemm / correlate1d = 0.2-0.3 at 2160x3840, 1200x1736 and 600x868, 0.4-0.7 at 300x434,
    # about 1 at 150x217 and 1.5-2.5 below 100x100 (call overheads): hence _GEMM_MIN_PIXELS.
    # On a GPU cupyx's correlate1d is one fused kernel per pass, so it is kept there.
    if (B.backend_of(image).name == "numpy" and image.dtype == numpy.float32
            and min(image.shape) > r and image.shape[0] * image.shape[1] >= _GEMM_MIN_PIXELS):
        return blur_gemm(image, k, out=out)
    nd = B.ndimage(xp)
    tmp = nd.correlate1d(image, k, axis=1, mode="mirror")
    if out is None:
        return nd.correlate1d(tmp, k, axis=0, mode="mirror")
    nd.correlate1d(tmp, k, axis=0, output=out, mode="mirror")
    return out


def toeplitz_band(k, block: int):
    """Banded Toeplitz matrix ``T`` of shape (block + K - 1, block) with ``T[j + t, j] = k[t]``:
    ``window @ T`` correlates a window of ``block + K - 1`` samples with ``k`` (``valid`` mode)."""
    xp = B.get_array_module(k)
    K = int(k.shape[0])
    kh = B.to_host(k)
    T = numpy.zeros((block + K - 1, block), dtype=kh.dtype)
    for t in range(K):
        T[numpy.arange(block) + t, numpy.arange(block)] = kh[t]
    return B._backend_for_xp(xp).asarray(T)


@functools.lru_cache(maxsize=64)
def _toeplitz_pair(k_bytes: bytes, dtype: str, block: int):
    """:func:`toeplitz_band` of a host kernel and its contiguous transpose, read-only, cached
    (a call's fixed cost on small images)."""
    T = toeplitz_band(numpy.frombuffer(k_bytes, dtype=dtype), block)
    Tt = numpy.ascontiguousarray(T.T)
    T.setflags(write=False)
    Tt.setflags(write=False)
    return T, Tt


def blur_gemm(image, k, *, out=None, block: int = _GEMM_BLOCK, cols: int = _GEMM_COLS):
    """Separable correlation of a 2-D image with the odd 1-D kernel ``k`` along both axes,
    mirror (reflect-101) borders, as batches of small matrix products.

    Rows: the row-padded image is cut into windows of ``block + K - 1`` samples, one per block of
    ``block`` outputs (a strided view, no copy), and every window is multiplied by the banded
    Toeplitz matrix of :func:`toeplitz_band` -- ``2 (block + K - 1)`` flops per pixel, but at
    BLAS speed.  Columns: ``T^T`` times windows of ``block + K - 1`` rows, ``cols`` columns at a
    time, written straight into ``out``.  Both passes run over strips of rows, so the row pass's
    output is still in cache when the column pass reads it (only strip-sized buffers are
    allocated).  Every BLAS call stays below OpenBLAS's threading threshold.  Equals
    ``correlate1d(correlate1d(image, k, axis=1), k, axis=0)`` with ``mode='mirror'`` up to float
    rounding.  Needs ``min(H, W) > K // 2``.  Written with ``xp`` calls (``as_strided``,
    ``matmul(out=)``), but :func:`gaussian_blur` uses it on NumPy only.
    """
    xp = B.get_array_module(image)
    H, W = (int(n) for n in image.shape)
    K = int(k.shape[0])
    r = K // 2
    if min(H, W) <= r:
        raise ValueError(f"image {H}x{W} too small for a {K}-tap kernel")
    dt = image.dtype
    es = numpy.dtype(dt).itemsize
    if B.backend_of(image).name == "numpy":  # the pyramid repeats its kernels every octave
        T, Tt = _toeplitz_pair(B.to_host(k).astype(dt).tobytes(), numpy.dtype(dt).str, block)
    else:
        T = toeplitz_band(k.astype(dt), block)
        Tt = xp.ascontiguousarray(T.T)
    if out is None:
        out = xp.empty((H, W), dtype=dt)
    Wt = -(-W // block) * block
    # Strips of S output rows (see _blur_rows); the host threads take runs of whole strips, so
    # every BLAS call sees the same operands with any thread count: the same bits
    S = block * max(1, -(-(2 * r + 1) // block), _STRIP_BYTES // (Wt * es * block))
    n_strips = -(-H // S)

    def work(lo, hi):
        _blur_rows(image, T, Tt, out, lo * S, min(H, hi * S), S, block, cols)

    parallel.parallel_for(n_strips, work, nbytes=H * W * es * 2, like=image)
    return out


def _blur_rows(image, T, Tt, out, y0: int, y1: int, S: int, block: int, cols: int):
    """Output rows ``[y0, y1)`` of :func:`blur_gemm` (``y0`` a multiple of ``S``), with strip
    buffers of its own."""
    xp = B.get_array_module(image)
    st = xp.lib.stride_tricks
    H, W = (int(n) for n in image.shape)
    K = int(T.shape[0]) - block + 1
    r = K // 2
    dt = image.dtype
    es = numpy.dtype(dt).itemsize
    nbw = -(-W // block)
    Wt = nbw * block
    g = max(1, _GEMM_MNK // (block * (block + K - 1)))  # row blocks per BLAS call
    cols = max(1, min(cols, _GEMM_MNK // (block * (block + K - 1))))
    ncg = W // cols
    # The row pass fills a rolling buffer ``tb`` whose row j is padded row r0 + j (image row
    # r0 + j - r), the column pass reads it while it is still in cache.
    tb = xp.empty((S + 2 * r, Wt), dtype=dt)
    P = xp.empty((S + 2 * r, Wt + K - 1), dtype=dt)  # column-padded rows (tail columns unused)
    P[:, W + 2 * r:] = 0
    done = max(0, y0 - r)  # image rows row-filtered so far (from y0 - r: the top halo)
    for r0 in range(y0, y1, S):
        if r0 > y0:
            tb[:2 * r] = tb[S:S + 2 * r]
        # 1) image rows [done, need): mirror-pad columns, multiply windows by T
        need = min(H, r0 + S + r)
        n = need - done
        Pn = P[:n]
        src = image[done:need]
        Pn[:, r:r + W] = src
        Pn[:, :r] = src[:, 1:r + 1][:, ::-1]
        Pn[:, r + W:W + 2 * r] = src[:, W - 1 - r:W - 1][:, ::-1]
        j0 = done - r0 + r
        for b0 in range(0, nbw, g):
            nb = min(g, nbw - b0)
            win = st.as_strided(Pn[:, b0 * block:], shape=(n, nb, block + K - 1),
                                strides=(Pn.strides[0], block * es, es))
            dst = tb[j0:j0 + n, b0 * block:(b0 + nb) * block]
            xp.matmul(win, T, out=dst.reshape(n, nb, block))
        if r0 == 0:
            tb[:r] = tb[2 * r:r:-1]                 # image row -i = row i
        done = need
        bs = min(S, H - r0)
        if done == H:                               # image row H - 1 + i = row H - 1 - i
            j = H - 1 - r0 + r
            tb[j + 1:bs + 2 * r] = tb[j - 1:j - 1 - (bs + 2 * r - j - 1):-1]
        # 2) columns: out[a:a + b] = T[:b + K - 1, :b]^T @ padded rows [a, a + b + K - 1)
        for a in range(r0, r0 + bs, block):
            b = min(block, H - a)
            Tb = Tt[:b, :b + K - 1]
            src = tb[a - r0:a - r0 + b + K - 1]
            dst = out[a:a + b]
            if ncg:
                sv = st.as_strided(src, shape=(ncg, b + K - 1, cols),
                                   strides=(cols * es, src.strides[0], es))
                dv = st.as_strided(dst, shape=(ncg, b, cols),
                                   strides=(cols * es, dst.strides[0], es))
                xp.matmul(Tb, sv, out=dv)
            if ncg * cols < W:
                dst[:, ncg * cols:] = xp.matmul(Tb, src[:, ncg * cols:W])


def image_gradients(image):
    """Central differences ``gx = (I[y, x+1] - I[y, x-1]) / 2``,
    ``gy = (I[y+1, x] - I[y-1, x]) / 2``.

    Mirror (reflect-101) borders, so both are 0 across the border line.  ``gy`` points down
    (row index increases).  ``image``: a float array (H, W) (any values) or a file path, read
    by :func:`minifeat.io.as_image`.  Returns two arrays of shape (H, W).
    """
    if is_path(image):
        image = as_image(image)
    xp = B.get_array_module(image)
    if image.ndim != 2:
        raise ValueError(f"`image` must be 2-D, got shape {tuple(image.shape)}")
    p = xp.pad(image, 1, mode="reflect")
    gx = (p[1:-1, 2:] - p[1:-1, :-2]) * 0.5
    gy = (p[2:, 1:-1] - p[:-2, 1:-1]) * 0.5
    return gx, gy


def gradient_polar(image, out=None):
    """SIFT's gradient in polar form on the interior, as OpenCV computes it (Lowe 2004, sec. 5).

    ``dx = I[y, x+1] - I[y, x-1]``, ``dy = I[y-1, x] - I[y+1, x]`` (note: y *up*, not halved),
    ``mag = hypot(dx, dy)``, ``ori = atan2(dy, dx)`` in degrees, [0, 360).  The outermost ring of
    pixels has ``mag = 0`` (OpenCV skips those samples).  (``ori`` may read 360 where ``dy`` is
    -0 or rounds so; 360 and 0 fall in the same bin.)  ``out``: optional pair of (H, W) arrays
    (views allowed) written in place and returned.  Returns ``(mag, ori)`` of shape (H, W).
    """
    xp = B.get_array_module(image)
    H, W = image.shape
    if out is not None:
        mag, ori = out
    else:
        mag = xp.empty((H, W), dtype=image.dtype)
        ori = xp.empty((H, W), dtype=image.dtype)
    if H < 3 or W < 3:
        mag[...] = 0
        ori[...] = 0
        return mag, ori
    for a in (mag, ori):
        a[0] = 0
        a[-1] = 0
        a[:, 0] = 0
        a[:, -1] = 0
    c = image.dtype.type(180.0 / math.pi)
    # On the CPU in strips of rows, so that the temporaries stay in cache (and are not fresh,
    # page-faulting memory for every image); on a GPU in one piece.
    rows = max(1, _STRIP_BYTES // 16 // W) if B.backend_of(image).name == "numpy" else H
    for y0 in range(1, H - 1, rows):
        y1 = min(H - 1, y0 + rows)
        # negated differences: atan2(-dy, -dx) + 180 = atan2(dy, dx) mod 360, in [0, 360]
        ndx = image[y0:y1, :-2] - image[y0:y1, 2:]
        ndy = image[y0 + 1:y1 + 1, 1:-1] - image[y0 - 1:y1 - 1, 1:-1]
        o = ori[y0:y1, 1:-1]
        xp.arctan2(ndy, ndx, out=o)
        o *= c
        o += image.dtype.type(180.0)
        ndx *= ndx
        ndy *= ndy
        ndx += ndy
        xp.sqrt(ndx, out=mag[y0:y1, 1:-1])
    return mag, ori


class GradientSampler:
    """:func:`gradient_polar` of one image, read at flat pixel indices ``r * W + c``
    (:meth:`sample`) or as square windows around keypoints (:meth:`windows`).

    Sparse reads compute the gradient at just those pixels; once more samples have been
    asked for than the image has pixels (a quarter of them for windows), the dense maps are
    built once and indexed (keypoint windows overlap a lot on busy images, rarely on quiet
    ones).  Values are the same bits either way (sparse reads use :func:`gradient_polar`'s
    formula), so results never depend on the choice.  :meth:`sample`: pixels on the outer ring
    must be masked by the caller (dense maps hold 0 there, sparse reads are clamped inside the
    image); :meth:`windows` returns magnitude 0 there and off the image.

    Threads: the lazy builds of the dense maps are guarded by a lock, and the maps are never
    written once built, so several threads may read windows of one sampler at once.
    :meth:`prepare` builds the maps up front (the memory then is not allocated mid-way).
    """

    def __init__(self, image, *, workspace=None):
        self.image = image
        self.workspace = workspace  # optional minidl Workspace for the padded maps
        self.shape = tuple(image.shape)
        self.requested = 0
        self.expected = 0
        self._maps = None
        self._padded = None  # (margin, mag, ori): dense maps with ``margin`` zeros around
        self._lock = threading.Lock()

    def expect(self, n_samples: int) -> None:
        """Declare window samples that are about to be read (by :meth:`windows`), so that the
        choice between sparse reads and dense maps is made once for the whole demand: callers
        that read a few keypoints at a time would otherwise read sparsely until their running
        total crosses the threshold, and then build the maps anyway."""
        with self._lock:
            self.expected += int(n_samples)

    def prepare(self, R: int = 0) -> None:
        """Build the zero-padded dense maps now, with a margin for windows of radius up to
        ``R`` (int >= 0; wider windows later widen it)."""
        if not (isinstance(R, (int, numpy.integer)) and R >= 0):
            raise ValueError(f"`R` must be a non-negative int, got {R!r}")
        self._padded_maps(2 * int(R) + 1)

    def windows(self, r, c, R: int):
        """``(mag, ori)`` of the square windows of radius ``R`` centred on pixels ``(r, c)``
        (int arrays (K,)), each of shape (K, 2R + 1, 2R + 1).

        Samples on the outer ring or off the image read ``mag = 0`` (so they add nothing to a
        histogram; OpenCV skips them), ``ori = 0``.  The dense maps are padded with zeros once
        per image, and every window is a block copy out of a strided view (no per-sample index
        arithmetic, no random gathers).
        """
        xp = B.get_array_module(self.image)
        H, W = self.shape
        side = 2 * R + 1
        with self._lock:
            self.requested += int(r.shape[0]) * side * side
            sparse = (self._maps is None and self._padded is None
                      and max(self.requested, self.expected) * _WINDOW_DENSE_RATIO <= H * W)
        if sparse:
            return self._sparse_windows(r, c, R)
        M, pm, po = self._padded_maps(2 * R + 1)
        # keypoints farther off the image than R + 1 have all-zero windows, as at R + 1
        rr = xp.clip(r, -R - 1, H + R) + (M - R)
        cc = xp.clip(c, -R - 1, W + R) + (M - R)
        out = []
        for a in (pm, po):
            view = xp.lib.stride_tricks.as_strided(
                a, shape=(H + 2 * M - 2 * R, W + 2 * M - 2 * R, side, side),
                strides=(a.strides[0], a.strides[1], a.strides[0], a.strides[1]))
            out.append(view[rr, cc])
        return out[0], out[1]

    def _padded_maps(self, need: int):
        """``(margin, mag, ori)``: the dense maps with a zero margin of at least ``need``
        (windows of keypoints up to R + 1 pixels off the image need 2R + 1), built or widened
        under the lock; a wider margin replaces the tuple, never writes into one in use."""
        padded = self._padded
        if padded is not None and padded[0] >= need:
            return padded
        with self._lock:
            if self._padded is None or self._padded[0] < need:
                H, W = self.shape
                # 80 covers SIFT's windows (R <= 39 for layers up to S + 0.5 at sigma 1.6)
                M = max(need, 2 * self._padded[0] if self._padded else 80)
                pm, po = (self._zero_margin(H, W, M) for _ in range(2))
                inner = (pm[M:M + H, M:M + W], po[M:M + H, M:M + W])
                if self._padded is None:
                    gradient_polar(self.image, out=inner)
                else:  # a wider margin: copy the maps, do not recompute them
                    m0 = self._padded[0]
                    for dst, src in zip(inner, self._padded[1:]):
                        dst[...] = src[m0:m0 + H, m0:m0 + W]
                self._padded = (M, pm, po)
            return self._padded

    def _zero_margin(self, H: int, W: int, M: int):
        """An (H + 2M, W + 2M) array whose margin of width ``M`` is 0 (inside: anything)."""
        xp = B.get_array_module(self.image)
        shape = (H + 2 * M, W + 2 * M)
        if self.workspace is None:
            return xp.zeros(shape, dtype=self.image.dtype)
        a = self.workspace.take(xp, shape, self.image.dtype)
        a[:M] = 0
        a[M + H:] = 0
        a[M:M + H, :M] = 0
        a[M:M + H, M + W:] = 0
        return a

    def _sparse_windows(self, r, c, R):
        xp = B.get_array_module(self.image)
        H, W = self.shape
        off = xp.arange(-R, R + 1)
        yy = r[:, None] + off[None, :]
        xx = c[:, None] + off[None, :]
        inside = ((yy > 0) & (yy < H - 1))[:, :, None] & ((xx > 0) & (xx < W - 1))[:, None, :]
        flat = (xp.clip(yy, 0, H - 1) * W)[:, :, None] + xp.clip(xx, 0, W - 1)[:, None, :]
        mag, ori = self._sparse(flat)
        return xp.where(inside, mag, 0), xp.where(inside, ori, 0)

    def sample(self, flat):
        """``(mag, ori)`` at int array ``flat`` (any shape), ``ori`` in degrees [0, 360]."""
        xp = B.get_array_module(self.image)
        H, W = self.shape
        with self._lock:
            self.requested += int(flat.size)
            if self._maps is None and self.requested > H * W // 2:
                mag, ori = gradient_polar(self.image)
                self._maps = (mag.reshape(-1), ori.reshape(-1))
            maps = self._maps
        if maps is not None:
            return xp.take(maps[0], flat), xp.take(maps[1], flat)
        return self._sparse(flat)

    def _sparse(self, flat):
        """:func:`gradient_polar` at the interior pixels ``flat``, the same operations in the
        same order (so the same bits as the dense maps)."""
        xp = B.get_array_module(self.image)
        H, W = self.shape
        g = self.image.reshape(-1)
        f = xp.clip(flat, W, H * W - W - 1)
        ndx = xp.take(g, f - 1) - xp.take(g, f + 1)
        ndy = xp.take(g, f + W) - xp.take(g, f - W)
        o = xp.arctan2(ndy, ndx)
        o *= g.dtype.type(180.0 / math.pi)
        o += g.dtype.type(180.0)
        ndx *= ndx
        ndy *= ndy
        ndx += ndy
        return xp.sqrt(ndx), o
