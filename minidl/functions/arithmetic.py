"""Elementwise arithmetic with broadcasting, the matrix product, and exp/log/sqrt/abs.

Each op is a :class:`~minidl.autograd.Function` with ``forward`` and ``backward`` side by side,
written once over ``xp``, plus a lowercase wrapper.  Gradient names: ``gy`` is the gradient of
the output, ``gx`` (``ga``, ``gb``) of the inputs.

Broadcasting: when ``a + b`` broadcasts ``b`` from shape (3,) to (2, 3), the gradient of ``b``
is ``gy`` summed back to (3,) -- :func:`sum_to_shape` does that reduction for every binary op.
"""
from __future__ import annotations

import numpy

from minidl import backend as B
from minidl.autograd import Function

__all__ = ["add", "sub", "mul", "div", "neg", "power", "matmul", "exp", "log", "sqrt", "abs",
           "sum_to_shape"]


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
