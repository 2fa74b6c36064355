"""Reductions: sum, mean, max and min over axes, with their gradients (gy broadcast back over
the reduced axes; max and min send it to the first extreme element)."""
from __future__ import annotations

import numpy

from minidl import backend as B
from minidl.autograd import Function

__all__ = ["sum", "mean", "max", "min"]

_max = max  # keep the builtin reachable


def _normalize_axis(axis, ndim, where):
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, numpy.integer)) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"{where}: axis {a} is out of range for an input with {ndim} dims")
        out.append(int(a) % ndim)
    return tuple(sorted(out))


def _expand_reduced(g, in_shape, axes):
    """Reshape a reduced gradient so that it broadcasts against the input again."""
    shape = [1 if i in axes else n for i, n in enumerate(in_shape)]
    return g.reshape(shape)


class Sum(Function):
    def __init__(self, axis=None, keepdims=False):
        self.axis, self.keepdims = axis, keepdims

    def forward(self, x):
        self.axes = _normalize_axis(self.axis, x.ndim, "sum")
        self.in_shape = x.shape
        return x.sum(axis=self.axes, keepdims=self.keepdims)

    def backward(self, gy):
        xp = B.get_array_module(gy)
        return xp.broadcast_to(_expand_reduced(gy, self.in_shape, self.axes), self.in_shape)


class Mean(Sum):
    def forward(self, x):
        y = super().forward(x)
        self.count = _max(1, int(numpy.prod([x.shape[a] for a in self.axes])))
        return y / x.dtype.type(self.count)

    def backward(self, gy):
        return super().backward(gy / gy.dtype.type(self.count))


class Max(Function):
    """Maximum over ``axis``; the gradient is shared equally among tied maxima."""

    def __init__(self, axis=None, keepdims=False, mode="max"):
        self.axis, self.keepdims, self.mode = axis, keepdims, mode

    def forward(self, x):
        self.axes = _normalize_axis(self.axis, x.ndim, self.mode)
        if x.size == 0:
            raise ValueError(f"{self.mode}: input is empty")
        reduce = x.max if self.mode == "max" else x.min
        y = reduce(axis=self.axes, keepdims=True)
        self.x, self.y = x, y
        return y if self.keepdims else y.reshape([n for i, n in enumerate(x.shape)
                                                  if i not in self.axes])

    def backward(self, gy):
        mask = (self.x == self.y).astype(gy.dtype)
        mask /= mask.sum(axis=self.axes, keepdims=True)
        return mask * _expand_reduced(gy, self.x.shape, self.axes)


# --------------------------------------------------------------------------- shapes


def sum(x, axis=None, keepdims=False):  # noqa: A001
    """Sum over ``axis`` (int, tuple, or None for all)."""
    return Sum(axis, keepdims)(x)


def mean(x, axis=None, keepdims=False):
    """Arithmetic mean over ``axis``."""
    return Mean(axis, keepdims)(x)


def max(x, axis=None, keepdims=False):  # noqa: A001
    """Maximum over ``axis``."""
    return Max(axis, keepdims, "max")(x)


def min(x, axis=None, keepdims=False):  # noqa: A001
    """Minimum over ``axis``."""
    return Max(axis, keepdims, "min")(x)
