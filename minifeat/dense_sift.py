"""Dense SIFT: upright 128-D SIFT descriptors on a regular grid, for a whole batch of images.

Same descriptor as :meth:`minifeat.SIFT.compute` (Lowe 2004, sec. 6; OpenCV's layout
``descriptor[(i * 4 + j) * 8 + k]``), evaluated at every point of a grid and at a few fixed
sizes with orientation 0 -- the "dense SIFT" / PHOW features of Bosch, Zisserman & Munoz 2007
and Lazebnik, Schmid & Ponce 2006, used for bags of visual words.

Why it is a pair of matrix products
-----------------------------------
With the orientation fixed at 0, the 4 x 4 x 8 trilinear histogram of a keypoint at pixel
``(py, px)`` of its Gaussian image is

    h[r, c, k] = sum_{i, j} O_k[py + i, px + j] * a_r(i) * a_c(j)

where ``O_k`` is the gradient magnitude split linearly between the two nearest of 8
orientation bins, and ``a_r(i) = exp(-(i / w)^2 / 8) * tri(i / w + 1.5 - r)`` is the
(separable) Gaussian window times the linear weight of cell row ``r`` (``w = 3 sigma`` is the
cell width, ``tri(t) = max(0, 1 - |t|)``, samples with ``|i / w| >= 2.5`` excluded, as in
:mod:`minifeat.descriptors`).  For all grid rows at once that is a matrix ``A`` of shape
(Gy * 4, H), so every descriptor of every image is ``A @ O_k @ A'^T``: one batched matmul per
side, no per-keypoint or per-image loop.

Shape legend: ``N`` images (H, W); grid ``Gy x Gx`` points per size, ``P = n_sizes * Gy * Gx``
descriptors per image.
"""
from __future__ import annotations

import math

import numpy

from minidl import backend as B

from .descriptors import D, HIST_WIDTH, N_ORI, normalize_descriptors, rootsift
from .filters import gaussian_kernel1d
from .io import scale_to_unit
from .keypoints import Keypoints
from .scale_space import n_octaves_for, sigma_schedule

__all__ = ["DenseSIFT", "dense_grid", "keypoint_sift"]


def dense_grid(image_shape, step: float, margin: float = 0.0):
    """Centred grid coordinates ``(ys, xs)`` (host float64 arrays) with spacing ``step``.

    Along an axis of length ``L``: ``n = floor((L - 1 - 2 margin) / step) + 1`` points,
    ``start = (L - 1 - step (n - 1)) / 2``, so the grid is symmetric about the image centre.
    """
    out = []
    for L in image_shape:
        n = int(math.floor((L - 1 - 2 * margin) / step + 1e-9)) + 1
        if n < 1:
            raise ValueError(f"`margin`={margin} leaves no grid point in an axis of length {L}")
        start = (L - 1 - step * (n - 1)) / 2.0
        out.append(start + step * numpy.arange(n, dtype=numpy.float64))
    return out[0], out[1]


class DenseSIFT:
    """Upright SIFT descriptors on a dense grid, vectorized over a batch of images.

    Parameters
    ----------
    step : float > 0, grid spacing in input pixels.
    sizes : sequence of float > 0, keypoint sizes in input pixels (``size = 2 sigma``, as in
        :class:`~minifeat.Keypoints`).  A descriptor covers 4 x 4 cells of ``1.5 size`` pixels,
        a square of side ``6 size``.
    margin : float >= 0, distance of the outermost grid points from the border (input pixels).
    upsample, sigma, n_intervals, assumed_blur : the scale-space settings of :class:`SIFT`;
        each size is described in the Gaussian image SIFT would pick for it (nearest blur).
    descriptor_format : "unit" (L2-normalised, clamped at 0.2, renormalised) or "rootsift".
    batch_size : images per batch (memory ~ ``batch_size * 8 * (2H) * (2W)`` floats).

    Example
    -------
    >>> import numpy as np
    >>> ds = DenseSIFT(step=8, sizes=(2.0,))
    >>> ds.compute(np.zeros((5, 28, 28), np.float32)).shape
    (5, 9, 128)
    """

    def __init__(self, step: float = 4.0, sizes=(2.0, 3.0), margin: float = 2.0,
                 upsample: bool = True, sigma: float = 1.6, n_intervals: int = 3,
                 assumed_blur: float = 0.5, descriptor_format: str = "unit",
                 batch_size: int = 256):
        if not step > 0:
            raise ValueError(f"`step` must be positive, got {step!r}")
        sizes = tuple(float(s) for s in numpy.atleast_1d(numpy.asarray(sizes, numpy.float64)))
        if not sizes or min(sizes) <= 0:
            raise ValueError(f"`sizes` must be a non-empty sequence of positive sizes, "
                             f"got {sizes!r}")
        if not margin >= 0:
            raise ValueError(f"`margin` must be >= 0, got {margin!r}")
        if descriptor_format not in ("unit", "rootsift"):
            raise ValueError(f"`descriptor_format` must be 'unit' or 'rootsift', "
                             f"got {descriptor_format!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"`batch_size` must be an int >= 1, got {batch_size!r}")
        self.step, self.sizes, self.margin = float(step), sizes, float(margin)
        self.upsample, self.sigma, self.n_intervals = bool(upsample), float(sigma), n_intervals
        self.assumed_blur, self.descriptor_format = float(assumed_blur), descriptor_format
        self.batch_size = batch_size

    def __repr__(self):
        return (f"DenseSIFT(step={self.step}, sizes={self.sizes}, margin={self.margin}, "
                f"upsample={self.upsample}, descriptor_format={self.descriptor_format!r})")

    # ------------------------------------------------------------------ geometry
    def _levels(self, image_shape):
        """Per size: (octave, layer) of the Gaussian image SIFT.compute would use."""
        S, first = self.n_intervals, (-1 if self.upsample else 0)
        n_oct = n_octaves_for(image_shape, first)
        out = []
        for size in self.sizes:
            est = int(numpy.rint(math.log2(max(size / 2.0, 1e-6) / self.sigma) * S)) - first * S
            o = min(max(est // S, 0), n_oct - 1)
            out.append((o + first, min(max(est - o * S, 0), S + 2)))
        return out

    def keypoints(self, image_shape) -> Keypoints:
        """The P grid keypoints (size-major, then rows, then columns), angle 0, with the
        ``octave``/``layer`` that make ``SIFT.compute`` describe them exactly as here."""
        ys, xs = dense_grid(image_shape, self.step, self.margin)
        yy, xx = numpy.meshgrid(ys, xs, indexing="ij")
        n = yy.size
        cols = {k: [] for k in ("x", "y", "size", "octave", "layer")}
        for size, (octave, layer) in zip(self.sizes, self._levels(image_shape)):
            cols["x"].append(xx.ravel())
            cols["y"].append(yy.ravel())
            cols["size"].append(numpy.full(n, size))
            cols["octave"].append(numpy.full(n, octave))
            cols["layer"].append(numpy.full(n, layer))
        b = B.get_backend()
        h = {k: b.asarray(numpy.concatenate(v)) for k, v in cols.items()}
        return Keypoints(h["x"], h["y"], h["size"], octave=h["octave"], layer=h["layer"])

    def n_descriptors(self, image_shape) -> int:
        ys, xs = dense_grid(image_shape, self.step, self.margin)
        return len(self.sizes) * len(ys) * len(xs)

    # ------------------------------------------------------------------ compute
    def compute(self, images, *, max_value=None, nonfinite: str = "raise"):
        """Descriptors of ``images`` (N, H, W) -> float32 array (N, P, 128) on the images'
        backend, in :meth:`keypoints` order.

        The values follow minifeat's input contract (:mod:`minifeat.io`): uint8 / 255,
        uint16 / 65535 (with a LowBitDepthWarning for 12-bit data), floats in [0, 1] (larger
        is a ValueError), no NaN/inf; ``max_value`` (the value meaning white) and
        ``nonfinite="zero"`` as in :func:`minifeat.io.as_image`.  Checked batch by batch."""
        if not B.is_array(images):
            raise TypeError(f"`images` must be an array of shape (N, H, W), "
                            f"got {type(images).__name__}")
        if images.ndim == 2:
            raise ValueError(f"`images` must be 3-D (N, H, W), got shape {tuple(images.shape)}; "
                             "use images[None] for a single image")
        if images.ndim != 3 or min(images.shape[1:]) < 2:
            raise ValueError(f"`images` must be 3-D (N, H, W) with H, W >= 2, "
                             f"got shape {tuple(images.shape)}")
        xp = B.get_array_module(images)
        N, H, W = (int(s) for s in images.shape)
        parts = [self._batch(scale_to_unit(images[s:s + self.batch_size],
                                           f"images[{s}:{min(N, s + self.batch_size)}]",
                                           max_value=max_value, nonfinite=nonfinite), xp)
                 for s in range(0, N, self.batch_size)]
        if not parts:
            return xp.zeros((0, self.n_descriptors((H, W)), 128), xp.float32)
        return parts[0] if len(parts) == 1 else xp.concatenate(parts, axis=0)

    def _batch(self, img, xp):
        """Descriptors of a float32 batch (n, H, W) in [0, 1]."""
        n, H, W = img.shape
        levels = self._levels((H, W))
        gauss = self._gaussians(img, xp, {lv for lv in levels})
        ys, xs = dense_grid((H, W), self.step, self.margin)
        out = []
        maps = {}
        for size, (octave, layer) in zip(self.sizes, levels):
            if (octave, layer) not in maps:
                maps[(octave, layer)] = _orientation_maps(gauss[(octave, layer)], xp)
            O = maps[(octave, layer)]                     # (n, 8, Ho, Wo)
            f = 2.0 ** -octave
            scale = size * 0.5 * f
            Ho, Wo = O.shape[2:]
            diag = math.sqrt(Ho * Ho + Wo * Wo)
            Ar = xp.asarray(_cell_weights(ys * f, scale, Ho, diag))   # (Gy * 4, Ho)
            Ac = xp.asarray(_cell_weights(xs * f, scale, Wo, diag))   # (Gx * 4, Wo)
            h = xp.matmul(xp.matmul(Ar, O), Ac.T)        # (n, 8, Gy * 4, Gx * 4)
            Gy, Gx = len(ys), len(xs)
            h = h.reshape(n, N_ORI, Gy, D, Gx, D).transpose(0, 2, 4, 3, 5, 1)
            out.append(h.reshape(n, Gy * Gx, D * D * N_ORI))
        raw = xp.concatenate(out, axis=1)
        P = raw.shape[1]
        d = normalize_descriptors(raw.reshape(n * P, D * D * N_ORI))
        if self.descriptor_format == "rootsift":
            d = rootsift(d)
        return d.reshape(n, P, D * D * N_ORI)

    def _gaussians(self, img, xp, needed):
        """The Gaussian images {(octave, layer): (n, Ho, Wo)} of ``needed``, built with the same
        operations as :func:`minifeat.scale_space.build_scale_space`, over the whole batch."""
        S, first = self.n_intervals, (-1 if self.upsample else 0)
        base = _upsample2x_batch(img, xp) if self.upsample else img
        pre = self.assumed_blur * (2.0 if self.upsample else 1.0)
        g = _blur_batch(base, math.sqrt(max(self.sigma ** 2 - pre ** 2, 0.01)), xp)
        sig = sigma_schedule(self.sigma, S)
        top = max(o for o, _ in needed) - first
        out = {}
        for o in range(top + 1):
            stack = [g]
            last = max([S] + [l for oo, l in needed if oo == o + first])
            for s in range(1, last + 1):
                stack.append(_blur_batch(stack[-1], sig[s], xp))
            for oo, l in needed:
                if oo == o + first:
                    out[(oo, l)] = stack[l]
            g = stack[S][:, ::2, ::2]
        return out


def keypoint_sift(images, sift=None):
    """Detected (not dense) SIFT features of each image of (N, H, W), flattened for
    :class:`~minifeat.bovw.BagOfWords`: ``(descriptors (M, 128), image_index (M,) int64,
    xy (M, 2))`` on the images' backend.  Detection differs per image, so this loops over the
    images (``sift`` defaults to ``SIFT()``)."""
    from .sift import SIFT

    if not B.is_array(images) or images.ndim != 3:
        raise ValueError(f"`images` must be an array of shape (N, H, W), got "
                         f"{getattr(images, 'shape', type(images).__name__)}")
    xp = B.get_array_module(images)
    sift = SIFT() if sift is None else sift
    desc, index, xy = [], [], []
    for n in range(int(images.shape[0])):
        kp, d = sift.detect_and_compute(images[n])
        desc.append(d)
        index.append(xp.full(len(kp), n, dtype=xp.int64))
        xy.append(kp.xy)
    if not desc:
        return (xp.zeros((0, 128), xp.float32), xp.zeros(0, xp.int64),
                xp.zeros((0, 2), xp.float32))
    return xp.concatenate(desc), xp.concatenate(index), xp.concatenate(xy)


def _blur_batch(images, sigma, xp):
    """:func:`minifeat.filters.gaussian_blur` of each image of (n, H, W): rows, then columns."""
    nd = B.ndimage(xp)
    k = gaussian_kernel1d(sigma, xp=xp, dtype=images.dtype)
    tmp = nd.correlate1d(images, k, axis=2, mode="mirror")
    return nd.correlate1d(tmp, k, axis=1, mode="mirror")


def _upsample2x_batch(a, xp):
    """:func:`minifeat.scale_space.upsample2x` over the last two axes of (n, H, W)."""
    n, H, W = a.shape
    rows = xp.empty((n, 2 * H, W), dtype=xp.float32)
    rows[:, 0::2] = 0.75 * a + 0.25 * xp.concatenate([a[:, :1], a[:, :-1]], axis=1)
    rows[:, 1::2] = 0.75 * a + 0.25 * xp.concatenate([a[:, 1:], a[:, -1:]], axis=1)
    out = xp.empty((n, 2 * H, 2 * W), dtype=xp.float32)
    out[:, :, 0::2] = 0.75 * rows + 0.25 * xp.concatenate([rows[:, :, :1], rows[:, :, :-1]], 2)
    out[:, :, 1::2] = 0.75 * rows + 0.25 * xp.concatenate([rows[:, :, 1:], rows[:, :, -1:]], 2)
    return out


def _orientation_maps(g, xp):
    """(n, H, W) Gaussian images -> (n, 8, H, W): the gradient magnitude of
    :func:`minifeat.gradients.gradient_polar` (0 on the outer ring) split linearly between the
    two orientation bins nearest to its angle (bin width 45 degrees, bin k centred at 45 k)."""
    n, H, W = g.shape
    dx = g[:, 1:-1, 2:] - g[:, 1:-1, :-2]
    dy = g[:, :-2, 1:-1] - g[:, 2:, 1:-1]
    mag = xp.sqrt(dx * dx + dy * dy)
    o = xp.arctan2(dy, dx) * (180.0 / math.pi)
    ori = xp.where(o < 0, o + 360.0, o).astype(g.dtype)
    obin = ori * numpy.float32(N_ORI / 360.0)
    o0 = xp.floor(obin)
    fo = obin - o0
    o0 = o0.astype(xp.int32) % N_ORI
    o1 = (o0 + 1) % N_ORI
    out = xp.zeros((n, N_ORI, H, W), dtype=g.dtype)
    for k in range(N_ORI):
        out[:, k, 1:-1, 1:-1] = (mag * (xp.where(o0 == k, 1 - fo, 0)
                                        + xp.where(o1 == k, fo, 0))).astype(g.dtype)
    return out


def _cell_weights(centres, scale, L, diag):
    """Host float32 matrix (G * 4, L): row ``g * 4 + r`` holds the weights ``a_r(i)`` of cell
    row ``r`` of the descriptor centred at ``rint(centres[g])`` over the ``L`` pixels of one
    axis; ``diag`` (the image diagonal) caps the window radius as in
    :func:`minifeat.descriptors.sift_descriptors`."""
    f32 = numpy.float32
    hw = HIST_WIDTH * scale
    radius = min(numpy.rint(hw * math.sqrt(2.0) * (D + 1) * 0.5), diag)
    inv = f32(math.cos(0.0) / hw)
    G = len(centres)
    out = numpy.zeros((G, D, L), f32)
    p = numpy.rint(centres).astype(numpy.int64)
    pix = numpy.arange(L)
    for g in range(G):
        i = (pix - p[g]).astype(f32)
        t = i * inv
        ok = (numpy.abs(t) < D / 2 + 0.5) & (numpy.abs(i) <= radius)
        gw = numpy.exp(t * t * f32(-1.0 / (D * D * 0.5)))
        rbin = t + f32(D / 2 - 0.5)
        r0 = numpy.floor(rbin)
        fr = rbin - r0
        r0 = r0.astype(numpy.int64)
        for r in range(D):
            w = numpy.where(r0 == r, 1 - fr, 0) + numpy.where(r0 + 1 == r, fr, 0)
            out[g, r] = numpy.where(ok, gw * w, 0)
    return out.reshape(G * D, L)
