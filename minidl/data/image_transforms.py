"""Per-image RGB augmentation of photos, for :class:`minidl.data.ImageFolder`:
``RandomResizedCrop``, ``RandomHorizontalFlip``, ``ColorJitter``, ``ResizeCenterCrop`` and
``ImageCompose``.

These take ONE image, a PIL image or a host uint8 array (H, W, 3), and return the same kind;
they run in the loader's decoding threads, before batching.  Each takes ``rng`` (a numpy
Generator) so that ImageFolderLoader can hand every sample its own seeded Generator: the
result then does not depend on which thread ran it.  Without ``rng`` a transform draws from
its own Generator (``seed``) or else minidl's host one (``minidl.backend.host_rng()``).
(Whole-batch transforms, applied after batching, are in :mod:`minidl.data.transforms`.)
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy

from minidl import backend as B

__all__ = ["RandomResizedCrop", "RandomHorizontalFlip", "ColorJitter", "ResizeCenterCrop",
           "ImageCompose"]


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
