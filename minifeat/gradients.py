"""Image gradients, by hand: central differences (:func:`image_gradients`), SIFT's polar form
(:func:`gradient_polar`, as OpenCV computes it) and :class:`GradientSampler`, which reads that
polar form at keypoints' pixels or windows for the orientation and descriptor stages, sparsely
or from dense maps, with the same bits either way.
"""
from __future__ import annotations

import math
import threading

import numpy

from minidl import backend as B
from minidl import parallel

from .io import as_image, is_path

__all__ = ["image_gradients", "gradient_polar", "GradientSampler"]

_STRIP_BYTES = 1 << 19  # gradient_polar's rows per strip: its temporaries stay in cache
# GradientSampler.windows builds the dense maps once the windows asked for cover more than
# 1 / _WINDOW_DENSE_RATIO of the image (a window sample read sparsely costs several dense pixels)
_WINDOW_DENSE_RATIO = 4


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
    # On the CPU in strips of rows, so that the temporaries stay in cache (and are not fresh,
    # page-faulting memory for every image), the host threads taking runs of whole strips
    # (elementwise: the same bits with any thread count); on a GPU in one piece.
    rows = max(1, _STRIP_BYTES // 16 // W) if B.backend_of(image).name == "numpy" else H
    n_strips = -(-(H - 2) // rows)

    def work(lo, hi):
        for k in range(lo, hi):
            y0 = 1 + k * rows
            _polar_rows(image, mag, ori, y0, min(H - 1, y0 + rows))

    parallel.parallel_for(n_strips, work, nbytes=H * W * image.dtype.itemsize * 3, like=image)
    return mag, ori


def _polar_rows(image, mag, ori, y0: int, y1: int):
    """:func:`gradient_polar` of the interior rows ``y0:y1`` (1 <= y0 < y1 <= H - 1)."""
    xp = B.get_array_module(image)
    # negated differences: atan2(-dy, -dx) + 180 = atan2(dy, dx) mod 360, in [0, 360]
    ndx = image[y0:y1, :-2] - image[y0:y1, 2:]
    ndy = image[y0 + 1:y1 + 1, 1:-1] - image[y0 - 1:y1 - 1, 1:-1]
    o = ori[y0:y1, 1:-1]
    xp.arctan2(ndy, ndx, out=o)
    o *= image.dtype.type(180.0 / math.pi)
    o += image.dtype.type(180.0)
    ndx *= ndx
    ndy *= ndy
    ndx += ndy
    xp.sqrt(ndx, out=mag[y0:y1, 1:-1])


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
