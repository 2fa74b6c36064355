"""Batch transforms for image data: ``RandomShift``, ``Normalize`` and ``Compose``.

A transform is a callable ``batch -> batch`` over a whole mini-batch at once (vectorized, no
Python loop per image).  :class:`minidl.data.DataLoader` applies its ``transform`` on the host,
to the float batch it has just made: a ``numpy.ndarray`` of shape ``(B, C, H, W)`` (``(B, 1,
28, 28)`` for MNIST), in the default float dtype, pixels scaled to ``[0, 1]``; the result is
then moved to the active backend's device.  So the transforms here take and return host NumPy
arrays of shape ``(B, C, H, W)`` (``RandomShift`` also accepts any ``(B, ..., H, W)``, uint8
included); they keep the dtype of their input::

    train = DataLoader(x, y, batch_size=128, shuffle=True, seed=0,
                       transform=Compose([RandomShift(2), Normalize(0.1307, 0.3081)]))

Randomness comes from a host ``numpy.random.Generator``: the transform's own, seeded with
``seed``, or else minidl's (``minidl.backend.host_rng()``, seeded by ``minidl.seed``), so that
runs are reproducible either way.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy

from minidl import backend as B

__all__ = ["RandomShift", "Normalize", "Compose", "RandomResizedCrop", "RandomHorizontalFlip",
           "ColorJitter", "ResizeCenterCrop", "ImageCompose"]


def _check_host_batch(x, name: str, min_ndim: int) -> numpy.ndarray:
    if not isinstance(x, numpy.ndarray):
        raise TypeError(f"{name}: the batch must be a host numpy.ndarray (transforms run before "
                        f"the transfer to the device), got {type(x).__module__}."
                        f"{type(x).__name__}")
    if x.ndim < min_ndim:
        raise ValueError(f"{name}: the batch must have at least {min_ndim} dimensions "
                         f"(B, ..., H, W), got shape {x.shape}")
    return x


class RandomShift:
    """Translate each image of a batch by a random whole number of pixels, filling with zeros.

    For every image an offset ``(dy, dx)`` is drawn uniformly from
    ``{-max_shift, ..., max_shift}**2``; the output is ``out[..., i, j] = x[..., i - dy, j - dx]``
    where that index is inside the image, else 0 (the background of MNIST).  The whole batch is
    shifted by one gather from a zero-padded copy: no loop over images.

    Parameters
    ----------
    max_shift : int
        The largest shift in pixels along each axis (>= 0; 0 is the identity).
    seed : int or None
        Seed of the transform's own Generator; None uses ``minidl.backend.host_rng()``.

    Call
    ----
    x : numpy.ndarray of shape (B, ..., H, W), any dtype (uint8 or float)
        Host batch; the last two axes are rows and columns.
    returns : numpy.ndarray, the same shape and dtype.

    Example
    -------
    >>> shift = RandomShift(2, seed=0)
    >>> shift(numpy.ones((4, 1, 28, 28), numpy.float32)).shape
    (4, 1, 28, 28)
    """

    def __init__(self, max_shift: int, seed: int | None = None):
        if isinstance(max_shift, bool) or not isinstance(max_shift, (int, numpy.integer)) \
                or max_shift < 0:
            raise ValueError(f"RandomShift: max_shift must be a non-negative int, "
                             f"got {max_shift!r}")
        if seed is not None and (isinstance(seed, bool) or
                                 not isinstance(seed, (int, numpy.integer)) or seed < 0):
            raise ValueError(f"RandomShift: seed must be a non-negative int or None, got {seed!r}")
        self.max_shift = int(max_shift)
        self.seed = seed
        self._rng = None if seed is None else numpy.random.default_rng(seed)

    @property
    def rng(self) -> numpy.random.Generator:
        return B.host_rng() if self._rng is None else self._rng

    def __call__(self, x):
        x = _check_host_batch(x, "RandomShift", 3)
        s = self.max_shift
        if s == 0 or x.shape[0] == 0:
            return x
        dy, dx = self.rng.integers(-s, s + 1, size=(2, x.shape[0]))
        return shift_images(x, dy, dx, s)

    def __repr__(self) -> str:
        return f"RandomShift(max_shift={self.max_shift}, seed={self.seed})"


def shift_images(x: numpy.ndarray, dy, dx, pad: int | None = None) -> numpy.ndarray:
    """Shift image ``k`` of ``x`` by ``(dy[k], dx[k])`` pixels (down, right), zero fill.

    Parameters
    ----------
    x : numpy.ndarray of shape (B, ..., H, W)
    dy, dx : int arrays of shape (B,)
    pad : int or None, at least ``max(|dy|, |dx|)`` (computed when None).

    Returns
    -------
    numpy.ndarray, the shape and dtype of ``x``.
    """
    dy = numpy.asarray(dy, dtype=numpy.intp)
    dx = numpy.asarray(dx, dtype=numpy.intp)
    n, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    if pad is None:
        pad = int(max(numpy.abs(dy).max(initial=0), numpy.abs(dx).max(initial=0)))
    # Flatten the middle axes so one 4-D gather serves (B, H, W) and (B, C, H, W) alike.
    xm = x.reshape(n, -1, h, w)
    padded = numpy.zeros((n, xm.shape[1], h + 2 * pad, w + 2 * pad), dtype=x.dtype)
    padded[:, :, pad:pad + h, pad:pad + w] = xm
    rows = numpy.arange(h)[None, :] + (pad - dy)[:, None]          # (B, H)
    cols = numpy.arange(w)[None, :] + (pad - dx)[:, None]          # (B, W)
    out = padded[numpy.arange(n)[:, None, None, None],
                 numpy.arange(xm.shape[1])[None, :, None, None],
                 rows[:, None, :, None], cols[:, None, None, :]]
    return out.reshape(x.shape)


class Normalize:
    """``(x - mean) / std``, per channel (axis 1) or for the whole batch.

    Parameters
    ----------
    mean, std : float or sequence of C floats
        Scalars, or one value per channel of a ``(B, C, H, W)`` batch.  ``std`` must be > 0.
        For MNIST scaled to [0, 1] the usual values are ``mean=0.1307, std=0.3081``.

    Call
    ----
    x : numpy.ndarray of shape (B, C, H, W) (or (B, D) with scalar mean/std), float
    returns : numpy.ndarray, the same shape and dtype.
    """

    def __init__(self, mean, std):
        self.mean = numpy.atleast_1d(numpy.asarray(mean, dtype=numpy.float64))
        self.std = numpy.atleast_1d(numpy.asarray(std, dtype=numpy.float64))
        for name, v in (("mean", self.mean), ("std", self.std)):
            if v.ndim != 1 or v.size == 0:
                raise ValueError(f"Normalize: {name} must be a number or a 1-D sequence, "
                                 f"got shape {v.shape}")
            if not numpy.all(numpy.isfinite(v)):
                raise ValueError(f"Normalize: {name} must be finite, got {v.tolist()}")
        if self.mean.size != self.std.size and 1 not in (self.mean.size, self.std.size):
            raise ValueError(f"Normalize: mean and std must have equal lengths (or be scalars), "
                             f"got {self.mean.size} and {self.std.size}")
        if numpy.any(self.std <= 0):
            raise ValueError(f"Normalize: std must be > 0, got {self.std.tolist()}")

    def __call__(self, x):
        x = _check_host_batch(x, "Normalize", 2)
        if not numpy.issubdtype(x.dtype, numpy.floating):
            raise TypeError(f"Normalize: the batch must be floating point, got {x.dtype} "
                            "(the DataLoader converts uint8 images to float before transforms)")
        c = max(self.mean.size, self.std.size)
        if c == 1:
            mean, std = self.mean[0], self.std[0]
        else:
            if x.ndim < 2 or x.shape[1] != c:
                raise ValueError(f"Normalize: {c} channel means/stds need a batch of shape "
                                 f"(B, {c}, ...), got {x.shape}")
            shape = (1, c) + (1,) * (x.ndim - 2)
            mean = numpy.broadcast_to(self.mean, (c,)).reshape(shape)
            std = numpy.broadcast_to(self.std, (c,)).reshape(shape)
        mean = numpy.asarray(mean, dtype=x.dtype)
        inv = numpy.asarray(1.0 / numpy.asarray(std), dtype=x.dtype)
        return (x - mean) * inv

    def __repr__(self) -> str:
        def fmt(v):
            return f"{v[0]:g}" if v.size == 1 else "(" + ", ".join(f"{a:g}" for a in v) + ")"
        return f"Normalize(mean={fmt(self.mean)}, std={fmt(self.std)})"


class Compose:
    """Apply ``transforms`` one after the other: ``Compose([f, g])(x) == g(f(x))``."""

    def __init__(self, transforms: Sequence[Callable]):
        transforms = list(transforms)
        for i, t in enumerate(transforms):
            if not callable(t):
                raise TypeError(f"Compose: transforms[{i}] must be callable, got "
                                f"{type(t).__name__}")
        self.transforms = transforms

    def __call__(self, x):
        for t in self.transforms:
            x = t(x)
        return x

    def __repr__(self) -> str:
        return "Compose([" + ", ".join(repr(t) for t in self.transforms) + "])"


# -- per-image RGB augmentation (photos, for minidl.data.ImageFolder) ---------------------------
#
# These take ONE image, a PIL image or a host uint8 array (H, W, 3), and return the same kind;
# they run in the loader's decoding threads, before batching.  Each takes ``rng`` (a numpy
# Generator) so that ImageFolderLoader can hand every sample its own seeded Generator: the
# result then does not depend on which thread ran it.  Without ``rng`` a transform draws from
# its own Generator (``seed``) or else minidl's host one (``minidl.backend.host_rng()``).


def _as_pil(image, name: str):
    """(PIL image, was_array) for a PIL image or a uint8 (H, W, 3) / (H, W) host array."""
    from PIL import Image
    if isinstance(image, Image.Image):
        return image, False
    if isinstance(image, numpy.ndarray):
        if image.dtype != numpy.uint8 or image.ndim not in (2, 3) \
                or (image.ndim == 3 and image.shape[2] != 3):
            raise ValueError(f"{name}: an array image must be uint8 (H, W, 3) or (H, W), got "
                             f"{image.dtype} {image.shape}")
        return Image.fromarray(image), True
    raise TypeError(f"{name}: expected a PIL image or a host uint8 numpy array, got "
                    f"{type(image).__module__}.{type(image).__name__}")


def _back(image, was_array: bool):
    return numpy.asarray(image) if was_array else image


def _check_range(value, name: str, where: str, low: float = 0.0) -> tuple[float, float]:
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: {name} must be a (min, max) pair, got {value!r}") from None
    if not (low <= a <= b) or not numpy.isfinite(b):
        raise ValueError(f"{where}: {name} must satisfy {low:g} <= min <= max < inf, "
                         f"got {value!r}")
    return a, b


def _size_pair(size, where: str) -> tuple[int, int]:
    hw = (size, size) if isinstance(size, (int, numpy.integer)) else tuple(size)
    if len(hw) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, numpy.integer))
                           or v < 1 for v in hw):
        raise ValueError(f"{where}: size must be a positive int or an (height, width) pair of "
                         f"them, got {size!r}")
    return int(hw[0]), int(hw[1])


class _Random:
    """The seeded-Generator plumbing shared by the random image transforms."""
    takes_rng = True   # ImageFolder passes each sample's own Generator as ``rng``

    def __init__(self, seed):
        if seed is not None and (isinstance(seed, bool) or
                                 not isinstance(seed, (int, numpy.integer)) or seed < 0):
            raise ValueError(f"{type(self).__name__}: seed must be a non-negative int or None, "
                             f"got {seed!r}")
        self.seed = seed
        self._rng = None if seed is None else numpy.random.default_rng(seed)

    def _gen(self, rng):
        return rng if rng is not None else (B.host_rng() if self._rng is None else self._rng)


class RandomResizedCrop(_Random):
    """A random patch of random area and aspect ratio, resized (bilinear) to ``size``.

    As ``torchvision.transforms.RandomResizedCrop``: up to 10 tries draw an area fraction from
    ``scale`` (default 8 % to 100 % of the image) and a ratio w/h log-uniformly from ``ratio``
    (default 3/4 to 4/3); the first patch that fits is taken at a uniformly random place.  If
    none fits, the largest central patch with the ratio clamped to ``ratio``.

    Call: ``(image, rng=None)``; image a PIL image or uint8 (H, W, 3) host array; returns the
    same kind, ``size`` = (height, width) (an int means square).
    """

    def __init__(self, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), seed=None):
        super().__init__(seed)
        self.size = _size_pair(size, "RandomResizedCrop")
        self.scale = _check_range(scale, "scale", "RandomResizedCrop")
        self.ratio = _check_range(ratio, "ratio", "RandomResizedCrop", low=1e-12)
        if self.scale[1] <= 0:
            raise ValueError(f"RandomResizedCrop: scale must allow a positive area, got {scale}")

    def box(self, width: int, height: int, rng) -> tuple[int, int, int, int]:
        """(left, top, w, h) of the patch for an image ``width`` x ``height``."""
        area = width * height
        log_ratio = numpy.log(self.ratio)
        for _ in range(10):
            target = area * rng.uniform(*self.scale)
            aspect = float(numpy.exp(rng.uniform(*log_ratio)))
            w = int(round(numpy.sqrt(target * aspect)))
            h = int(round(numpy.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                top = int(rng.integers(0, height - h + 1))
                left = int(rng.integers(0, width - w + 1))
                return left, top, w, h
        in_ratio = width / height   # fallback: central crop, ratio clamped
        if in_ratio < self.ratio[0]:
            w, h = width, int(round(width / self.ratio[0]))
        elif in_ratio > self.ratio[1]:
            h, w = height, int(round(height * self.ratio[1]))
        else:
            w, h = width, height
        return (width - w) // 2, (height - h) // 2, w, h

    def __call__(self, image, rng=None):
        from PIL import Image
        im, was_array = _as_pil(image, "RandomResizedCrop")
        left, top, w, h = self.box(im.width, im.height, self._gen(rng))
        out = im.resize((self.size[1], self.size[0]), Image.Resampling.BILINEAR,
                        box=(left, top, left + w, top + h))
        return _back(out, was_array)

    def __repr__(self):
        return (f"RandomResizedCrop(size={self.size}, scale={self.scale}, ratio="
                f"({self.ratio[0]:.4g}, {self.ratio[1]:.4g}), seed={self.seed})")


class RandomHorizontalFlip(_Random):
    """Mirror the image left-right with probability ``p``.  Call: ``(image, rng=None)``."""

    def __init__(self, p: float = 0.5, seed=None):
        super().__init__(seed)
        if not 0 <= p <= 1:
            raise ValueError(f"RandomHorizontalFlip: p must be in [0, 1], got {p!r}")
        self.p = float(p)

    def __call__(self, image, rng=None):
        from PIL import Image
        im, was_array = _as_pil(image, "RandomHorizontalFlip")
        if self._gen(rng).random() < self.p:
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return _back(im, was_array)

    def __repr__(self):
        return f"RandomHorizontalFlip(p={self.p}, seed={self.seed})"


class ColorJitter(_Random):
    """Random brightness, contrast and saturation, applied in a random order (as torchvision's
    ``ColorJitter`` on PIL images, through ``PIL.ImageEnhance``).

    Each of ``brightness``, ``contrast``, ``saturation`` is a number j >= 0 (a factor drawn
    uniformly from [max(0, 1 - j), 1 + j]) or a (min, max) pair of factors; 0 leaves that
    property alone.  Factor 1 is the identity; saturation 0 gives grey (R = G = B); contrast
    blends with the image's mean grey, brightness with black.  Call: ``(image, rng=None)``.
    """

    def __init__(self, brightness=0.0, contrast=0.0, saturation=0.0, seed=None):
        super().__init__(seed)
        self.ranges = {}
        for name, v in (("brightness", brightness), ("contrast", contrast),
                        ("saturation", saturation)):
            if isinstance(v, (int, float, numpy.number)) and not isinstance(v, bool):
                if v < 0:
                    raise ValueError(f"ColorJitter: {name} must be >= 0, got {v!r}")
                v = (max(0.0, 1.0 - v), 1.0 + v)
            self.ranges[name] = _check_range(v, name, "ColorJitter")

    def factors(self, rng) -> list[tuple[str, float]]:
        """The (property, factor) pairs in the order they are applied, drawn from ``rng``."""
        order = rng.permutation(3)
        names = list(self.ranges)
        out = []
        for i in order:
            lo, hi = self.ranges[names[i]]
            if (lo, hi) != (1.0, 1.0):
                out.append((names[i], float(rng.uniform(lo, hi))))
        return out

    @staticmethod
    def apply(image, name: str, factor: float):
        """``image`` (PIL RGB) with one property scaled by ``factor`` (1: unchanged)."""
        from PIL import ImageEnhance
        enhancer = {"brightness": ImageEnhance.Brightness, "contrast": ImageEnhance.Contrast,
                    "saturation": ImageEnhance.Color}[name]
        return enhancer(image).enhance(factor)

    def __call__(self, image, rng=None):
        im, was_array = _as_pil(image, "ColorJitter")
        im = im.convert("RGB")
        for name, factor in self.factors(self._gen(rng)):
            im = self.apply(im, name, factor)
        return _back(im, was_array)

    def __repr__(self):
        inner = ", ".join(f"{k}={v}" for k, v in self.ranges.items())
        return f"ColorJitter({inner}, seed={self.seed})"


class ResizeCenterCrop:
    """The evaluation counterpart of :class:`RandomResizedCrop`: shorter side to ``resize``
    (bilinear), then the central ``crop`` x ``crop`` patch; ``resize`` defaults to
    ``round(crop * 256 / 224)`` (ImageNet's 256 / 224).  Call: ``(image, rng=None)``."""
    takes_rng = True

    def __init__(self, crop: int, resize: int | None = None):
        self.crop = _size_pair(crop, "ResizeCenterCrop")[0]
        self.resize = int(round(self.crop * 256 / 224)) if resize is None else resize
        if self.resize < self.crop:
            raise ValueError(f"ResizeCenterCrop: resize ({self.resize}) must be >= crop "
                             f"({self.crop})")

    def __call__(self, image, rng=None):
        from minidl.data.imagenet import center_crop, resize_shorter
        im, was_array = _as_pil(image, "ResizeCenterCrop")
        return _back(center_crop(resize_shorter(im, self.resize), self.crop), was_array)

    def __repr__(self):
        return f"ResizeCenterCrop(crop={self.crop}, resize={self.resize})"


class ImageCompose:
    """Per-image transforms one after the other, passing ``rng`` to those that take it
    (``takes_rng``): ``ImageCompose([crop, flip])(im, rng) == flip(crop(im, rng), rng)``."""
    takes_rng = True

    def __init__(self, transforms: Sequence[Callable]):
        self.transforms = list(transforms)
        for i, t in enumerate(self.transforms):
            if not callable(t):
                raise TypeError(f"ImageCompose: transforms[{i}] must be callable, got "
                                f"{type(t).__name__}")

    def __call__(self, image, rng=None):
        for t in self.transforms:
            image = t(image, rng=rng) if getattr(t, "takes_rng", False) else t(image)
        return image

    def __repr__(self):
        return "ImageCompose([" + ", ".join(repr(t) for t in self.transforms) + "])"
