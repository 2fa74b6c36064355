"""Separable Gaussian filtering, by hand (image gradients: :mod:`minifeat.gradients`).

Borders follow OpenCV's default ``BORDER_REFLECT_101`` (``dcb|abcd|cba``), which is
``mode='mirror'`` in ``scipy.ndimage`` and ``mode='reflect'`` in ``numpy.pad``.  The blur has
two engines: :func:`blur_gemm` (ours: banded Toeplitz blocks multiplied at BLAS speed) and the 1-D
correlation (``scipy.ndimage.correlate1d`` or its CuPy twin ``cupyx.scipy.ndimage.correlate1d``),
the only primitive borrowed.  :func:`gaussian_blur` picks the one that measures faster (see
there); kernels and their sizes are ours.
"""
from __future__ import annotations

import functools

import numpy

from minidl import backend as B
from minidl import parallel

from .io import as_image, is_path

__all__ = ["gaussian_kernel1d", "gaussian_blur", "blur_gemm", "toeplitz_band"]

# blur_gemm's block sizes: each BLAS call stays below OpenBLAS's threading threshold
# (m * n * k < 262144), so it runs single-threaded and cache-resident.
_GEMM_BLOCK = 16        # output pixels per Toeplitz block (16-64 measured; 16 best)
_GEMM_COLS = 128        # columns per matrix in the vertical pass
_GEMM_MNK = 200_000     # most multiply-adds per BLAS call
_STRIP_BYTES = 1 << 19  # row-filtered rows kept in cache between the two passes
_GEMM_MIN_PIXELS = 40_000  # smaller images: correlate1d is faster (call overheads)


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
