"""Elementary differentiable ops: arithmetic with broadcasting, matmul, reductions, shapes,
indexing, concatenation, exp/log/sqrt.

Each op is a :class:`~minidl.autograd.Function` with ``forward`` and ``backward`` side by side,
written once over ``xp``, plus a lowercase wrapper.  Gradient names: ``gy`` is the gradient of
the output, ``gx`` (``ga``, ``gb``) of the inputs.

Broadcasting: when ``a + b`` broadcasts ``b`` from shape (3,) to (2, 3), the gradient of ``b``
is ``gy`` summed back to (3,) -- :func:`sum_to` does that reduction for every binary op.
"""
from __future__ import annotations

import numpy

from minidl import backend as B
from minidl.autograd import Function, Tensor, as_tensor

__all__ = ["add", "sub", "mul", "div", "neg", "power", "matmul", "sum", "mean", "max", "min",
           "reshape", "transpose", "flatten", "getitem", "concatenate", "broadcast_to",
           "sum_to", "exp", "log", "sqrt", "abs"]

_sum, _max, _min, _abs = sum, max, min, abs  # keep the builtins reachable


def sum_to_shape(xp, g, shape):
    """Sum the array ``g`` over broadcast axes so that it has ``shape`` (the reverse of
    broadcasting)."""
    if g.shape == tuple(shape):
        return g
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(i + lead for i, n in enumerate(shape)
                                      if n == 1 and g.shape[i + lead] != 1)
    g = g.sum(axis=axes, keepdims=True)
    return g.reshape(shape) if lead else g


# --------------------------------------------------------------------------- arithmetic

class _Binary(Function):
    def _shapes(self, a, b):
        self.a_shape, self.b_shape = a.shape, b.shape


class Add(_Binary):
    def forward(self, a, b):
        self._shapes(a, b)
        return a + b

    def backward(self, gy):
        xp = B.get_array_module(gy)
        return sum_to_shape(xp, gy, self.a_shape), sum_to_shape(xp, gy, self.b_shape)


class Sub(_Binary):
    def forward(self, a, b):
        self._shapes(a, b)
        return a - b

    def backward(self, gy):
        xp = B.get_array_module(gy)
        return sum_to_shape(xp, gy, self.a_shape), sum_to_shape(xp, -gy, self.b_shape)


class Mul(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, gy):
        xp = B.get_array_module(gy)
        return (sum_to_shape(xp, gy * self.b, self.a.shape),
                sum_to_shape(xp, gy * self.a, self.b.shape))


class Div(Function):
    def forward(self, a, b):
        self.a, self.b = a, b
        return a / b

    def backward(self, gy):
        xp = B.get_array_module(gy)
        ga = gy / self.b
        gb = -ga * self.a / self.b
        return sum_to_shape(xp, ga, self.a.shape), sum_to_shape(xp, gb, self.b.shape)


class Neg(Function):
    def forward(self, x):
        return -x

    def backward(self, gy):
        return -gy


class Power(Function):
    """``x ** p`` for a constant exponent ``p``: dy/dx = p * x ** (p - 1)."""

    def __init__(self, p):
        self.p = p

    def forward(self, x):
        self.x = x
        return x ** self.p

    def backward(self, gy):
        return gy * self.p * self.x ** (self.p - 1)


class MatMul(Function):
    """``a @ b`` for 2-D or batched operands: ga = gy @ b^T, gb = a^T @ gy."""

    def forward(self, a, b):
        if a.ndim < 1 or b.ndim < 1:
            raise ValueError("matmul: operands must have at least 1 dimension")
        if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
            raise ValueError(f"matmul: inner dimensions differ: a has shape {a.shape}, "
                             f"b has shape {b.shape}")
        self.a, self.b = a, b
        return a @ b

    def backward(self, gy):
        xp = B.get_array_module(gy)
        a, b = self.a, self.b
        a2 = a[None, :] if a.ndim == 1 else a
        b2 = b[:, None] if b.ndim == 1 else b
        g2 = gy  # restore the axes that 1-D operands dropped: b's first (1-D @ 1-D gives 0-d)
        if b.ndim == 1:
            g2 = xp.expand_dims(g2, -1)
        if a.ndim == 1:
            g2 = xp.expand_dims(g2, -2)
        ga = g2 @ xp.swapaxes(b2, -1, -2)
        gb = xp.swapaxes(a2, -1, -2) @ g2
        if a.ndim == 1:
            ga = ga.reshape(ga.shape[:-2] + ga.shape[-1:])
        if b.ndim == 1:
            gb = gb.reshape(gb.shape[:-1])
        return sum_to_shape(xp, ga, a.shape), sum_to_shape(xp, gb, b.shape)


# --------------------------------------------------------------------------- reductions

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

class Exp(Function):
    def forward(self, x):
        self.y = B.get_array_module(x).exp(x)
        return self.y

    def backward(self, gy):
        return gy * self.y


class Log(Function):
    def forward(self, x):
        self.x = x
        return B.get_array_module(x).log(x)

    def backward(self, gy):
        return gy / self.x


class Sqrt(Function):
    def forward(self, x):
        self.y = B.get_array_module(x).sqrt(x)
        return self.y

    def backward(self, gy):
        return gy / (2 * self.y)


class Abs(Function):
    def forward(self, x):
        self.x = x
        return B.get_array_module(x).abs(x)

    def backward(self, gy):
        return gy * B.get_array_module(gy).sign(self.x)


# --------------------------------------------------------------------------- wrappers

def add(a, b): return Add()(a, b)
def sub(a, b): return Sub()(a, b)
def mul(a, b): return Mul()(a, b)
def div(a, b): return Div()(a, b)
def neg(x): return Neg()(x)
def power(x, p):
    # a NumPy scalar exponent (np.float64(2.0)) would promote float32 data to float64
    return Power(p.item() if isinstance(p, numpy.generic) else p)(x)
def matmul(a, b): return MatMul()(a, b)
def exp(x): return Exp()(x)
def log(x): return Log()(x)
def sqrt(x): return Sqrt()(x)
def abs(x): return Abs()(x)  # noqa: A001 (mirrors numpy's name)


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


def _install_operators():
    """Give Tensor its operators and array-like methods (kept out of the autograd core)."""
    T = Tensor
    T.__add__ = lambda s, o: add(s, o)
    T.__radd__ = lambda s, o: add(o, s)
    T.__sub__ = lambda s, o: sub(s, o)
    T.__rsub__ = lambda s, o: sub(o, s)
    T.__mul__ = lambda s, o: mul(s, o)
    T.__rmul__ = lambda s, o: mul(o, s)
    T.__truediv__ = lambda s, o: div(s, o)
    T.__rtruediv__ = lambda s, o: div(o, s)
    T.__neg__ = lambda s: neg(s)
    T.__pow__ = lambda s, p: power(s, p)
    T.__matmul__ = lambda s, o: matmul(s, o)
    T.__rmatmul__ = lambda s, o: matmul(o, s)
    T.__getitem__ = lambda s, i: getitem(s, i)
    T.sum = lambda s, axis=None, keepdims=False: sum(s, axis, keepdims)
    T.mean = lambda s, axis=None, keepdims=False: mean(s, axis, keepdims)
    T.max = lambda s, axis=None, keepdims=False: max(s, axis, keepdims)
    T.min = lambda s, axis=None, keepdims=False: min(s, axis, keepdims)
    T.reshape = lambda s, *shape: reshape(s, *shape)
    T.transpose = lambda s, *axes: transpose(s, *axes)
    T.T = property(lambda s: transpose(s))
    T.exp = lambda s: exp(s)
    T.log = lambda s: log(s)
    T.sqrt = lambda s: sqrt(s)


_install_operators()
