"""Shape ops: reshape, transpose, flatten, broadcast_to, sum_to, indexing and concatenation;
their gradients move gy back into the input's shape."""
from __future__ import annotations

import numpy

from minidl import backend as B
from minidl.autograd import Function, Tensor, as_tensor
from minidl.functions.arithmetic import sum_to_shape

__all__ = ["reshape", "transpose", "flatten", "getitem", "concatenate", "broadcast_to",
           "sum_to"]


class Reshape(Function):
    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        self.in_shape = x.shape
        try:
            return x.reshape(self.shape)
        except ValueError:
            raise ValueError(f"reshape: cannot reshape an input of shape {x.shape} "
                             f"({x.size} elements) into {self.shape}") from None

    def backward(self, gy):
        return gy.reshape(self.in_shape)


class Transpose(Function):
    def __init__(self, axes=None):
        self.axes = axes

    def forward(self, x):
        self.axes_ = tuple(reversed(range(x.ndim))) if self.axes is None else tuple(self.axes)
        if sorted(a % x.ndim for a in self.axes_) != list(range(x.ndim)):
            raise ValueError(f"transpose: axes must be a permutation of 0..{x.ndim - 1}, "
                             f"got {self.axes}")
        return x.transpose(self.axes_)

    def backward(self, gy):
        inverse = tuple(numpy.argsort([a % gy.ndim for a in self.axes_]))
        return gy.transpose(inverse)


class BroadcastTo(Function):
    def __init__(self, shape):
        self.shape = tuple(shape)

    def forward(self, x):
        self.in_shape = x.shape
        xp = B.get_array_module(x)
        return xp.broadcast_to(x, self.shape)

    def backward(self, gy):
        return sum_to_shape(B.get_array_module(gy), gy, self.in_shape)


class SumTo(Function):
    def __init__(self, shape):
        self.shape = tuple(shape)

    def forward(self, x):
        self.in_shape = x.shape
        return sum_to_shape(B.get_array_module(x), x, self.shape)

    def backward(self, gy):
        return B.get_array_module(gy).broadcast_to(gy, self.in_shape)


def _is_basic_index(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return all(isinstance(i, (int, numpy.integer, slice)) or i is None or i is Ellipsis
               for i in items)


class GetItem(Function):
    """``x[index]``; the backward scatters ``gy`` into zeros (``add.at`` when indices may
    repeat, since a plain ``+=`` would drop repeated contributions)."""

    def __init__(self, index):
        self.index = index

    def forward(self, x):
        self.in_shape, self.in_dtype = x.shape, x.dtype
        return x[self.index]

    def backward(self, gy):
        xp = B.get_array_module(gy)
        gx = xp.zeros(self.in_shape, dtype=gy.dtype)
        if _is_basic_index(self.index):
            gx[self.index] = gy
        else:
            xp.add.at(gx, self.index, gy)
        return gx


class Concatenate(Function):
    def __init__(self, axis=0):
        self.axis = axis

    def forward(self, *xs):
        xp = B.get_array_module(*xs)
        self.sizes = [x.shape[self.axis] for x in xs]
        return xp.concatenate(xs, axis=self.axis)

    def backward(self, gy):
        bounds = numpy.cumsum(self.sizes)[:-1]
        index = [slice(None)] * gy.ndim
        parts, start = [], 0
        for stop in list(bounds) + [gy.shape[self.axis]]:
            index[self.axis] = slice(start, int(stop))
            parts.append(gy[tuple(index)])
            start = int(stop)
        return tuple(parts)


# --------------------------------------------------------------------------- elementwise


def reshape(x, *shape):
    shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    x = as_tensor(x)
    if tuple(shape) == x.shape:
        return x
    return Reshape(tuple(shape))(x)


def transpose(x, *axes):
    axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
    return Transpose(tuple(axes) if axes else None)(x)


def flatten(x, start_axis=1):
    """Collapse the axes from ``start_axis`` on: (N, C, H, W) -> (N, C*H*W)."""
    x = as_tensor(x)
    return reshape(x, x.shape[:start_axis] + (-1,))


def broadcast_to(x, shape):
    return BroadcastTo(shape)(x)


def sum_to(x, shape):
    return SumTo(shape)(x)


def getitem(x, index):
    """``x[index]`` with basic or advanced (array) indices; Tensor indices are unwrapped."""
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return GetItem(index)(x)


def concatenate(xs, axis=0):
    """Join a sequence of tensors along an existing axis."""
    xs = list(xs)
    if not xs:
        raise ValueError("concatenate: xs must hold at least one tensor, got none")
    return Concatenate(axis)(*xs)
