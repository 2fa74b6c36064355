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

Per-image augmentation of photos (before batching, for :class:`minidl.data.ImageFolder`) is in
:mod:`minidl.data.image_transforms`.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy

from minidl import backend as B

__all__ = ["RandomShift", "Normalize", "Compose"]


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
