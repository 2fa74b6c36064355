"""Activation functions: sigmoid, tanh, ReLU, leaky ReLU, softmax, log-softmax.

Each is elementwise (softmax: along ``axis``) and keeps the input's shape and dtype.
"""
from __future__ import annotations

from minidl import backend as B
from minidl.autograd import Function
from minidl.parallel import parallel_for

__all__ = ["sigmoid", "tanh", "relu", "leaky_relu", "softmax", "log_softmax"]


class Sigmoid(Function):
    """y = 1 / (1 + exp(-x)) elementwise, same shape and dtype as ``x`` (float32 or float64);
    dy/dx = y * (1 - y).

    Relative error <= 1e-6 (float32) and <= 1e-14 (float64) over the whole range: the formula
    has no cancellation (``0.5 * tanh(x / 2) + 0.5`` had: 0.44 relative error at x = -17 in
    float32).  For x below about -88.7 (float32) or -709 (float64) ``exp(-x)`` overflows to
    inf -- silenced, it is expected -- and y is exactly 0, the true value being below the
    smallest normal number.  On the CPU large arrays are computed in parallel parts."""

    def forward(self, x):
        xp = B.get_array_module(x)
        y = xp.empty(x.shape, dtype=x.dtype)
        xf, yf = x.reshape(-1), y.reshape(-1)
        one = x.dtype.type(1)

        def part(lo, hi):  # errstate is per thread: set it in each part
            t = yf[lo:hi]
            xp.negative(xf[lo:hi], out=t)
            with B.errstate(xp, over="ignore"):
                xp.exp(t, out=t)
            xp.add(t, one, out=t)
            xp.reciprocal(t, out=t)

        parallel_for(xf.shape[0], part, nbytes=x.nbytes, like=x)
        self.y = y
        return y

    def backward(self, gy):
        return gy * self.y * (1 - self.y)


class Tanh(Function):
    """dy/dx = 1 - y^2."""

    def forward(self, x):
        self.y = B.get_array_module(x).tanh(x)
        return self.y

    def backward(self, gy):
        return gy * (1 - self.y * self.y)


_ZERO_BLOCK = 1 << 15
_zeros: dict = {}


def relu_into(x, out):
    """``out = max(x, 0)`` elementwise (NaN propagates, like PyTorch); ``out`` (contiguous) may
    be ``x``.

    NumPy's ``maximum`` against a broadcast scalar has no SIMD loop and runs 3x slower than
    against an array, so on the CPU ``x`` is taken in blocks against one cached block of
    zeros."""
    xp = B.get_array_module(x)
    zero = x.dtype.type(0)
    if B.backend_of(x).name != "numpy" or not out.flags.c_contiguous:
        xp.maximum(x, zero, out=out)
        return out
    z = _zeros.get(x.dtype)
    if z is None:
        z = _zeros[x.dtype] = xp.zeros(_ZERO_BLOCK, dtype=x.dtype)
    xf, of = x.reshape(-1), out.reshape(-1)
    n = xf.shape[0]
    for a in range(0, n, _ZERO_BLOCK):
        b = min(n, a + _ZERO_BLOCK)
        xp.maximum(xf[a:b], z[:b - a], out=of[a:b])
    return out


class ReLU(Function):
    """y = max(x, 0); the gradient at exactly 0 is taken as 0 (as PyTorch does)."""

    def forward(self, x):
        xp = B.get_array_module(x)
        y = xp.empty(x.shape, dtype=x.dtype)
        self.mask = xp.empty(x.shape, dtype=bool)
        xf, yf, mf = x.reshape(-1), y.reshape(-1), self.mask.reshape(-1)
        zero = x.dtype.type(0)

        def part(lo, hi):  # parts of the array, in parallel on a multi-core CPU
            xp.greater(xf[lo:hi], zero, out=mf[lo:hi])
            # not x * mask: -inf * 0 is nan (and warns); maximum propagates nan like PyTorch
            relu_into(xf[lo:hi], yf[lo:hi])

        parallel_for(xf.shape[0], part, nbytes=x.nbytes, like=x)
        return y

    def backward(self, gy):
        xp = B.get_array_module(gy)
        gx = xp.empty(gy.shape, dtype=gy.dtype)
        gf, gxf, mf = gy.reshape(-1), gx.reshape(-1), self.mask.reshape(-1)
        parallel_for(gf.shape[0], lambda lo, hi: xp.multiply(gf[lo:hi], mf[lo:hi],
                                                             out=gxf[lo:hi]),
                     nbytes=gy.nbytes, like=gy)
        return gx


class LeakyReLU(Function):
    """y = x for x > 0, slope * x otherwise."""

    def __init__(self, slope=0.01):
        self.slope = slope

    def forward(self, x):
        xp = B.get_array_module(x)
        self.mask = x > 0
        return xp.where(self.mask, x, x * x.dtype.type(self.slope))

    def backward(self, gy):
        xp = B.get_array_module(gy)
        return xp.where(self.mask, gy, gy * gy.dtype.type(self.slope))


class Softmax(Function):
    """y_i = exp(x_i - max x) / sum_j exp(x_j - max x) along ``axis``;
    gx = y * (gy - sum(gy * y))."""

    def __init__(self, axis=-1):
        self.axis = axis

    def forward(self, x):
        xp = B.get_array_module(x)
        e = xp.exp(x - x.max(axis=self.axis, keepdims=True))
        self.y = e / e.sum(axis=self.axis, keepdims=True)
        return self.y

    def backward(self, gy):
        y = self.y
        return y * (gy - (gy * y).sum(axis=self.axis, keepdims=True))


def log_softmax_array(xp, x, axis=-1):
    """log softmax of an array: x - max - log(sum(exp(x - max))), stable for large |x|."""
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


class LogSoftmax(Function):
    """y = x - logsumexp(x); gx = gy - softmax(x) * sum(gy)."""

    def __init__(self, axis=-1):
        self.axis = axis

    def forward(self, x):
        xp = B.get_array_module(x)
        self.y = log_softmax_array(xp, x, self.axis)
        return self.y

    def backward(self, gy):
        xp = B.get_array_module(gy)
        return gy - xp.exp(self.y) * gy.sum(axis=self.axis, keepdims=True)


def sigmoid(x): return Sigmoid()(x)
def tanh(x): return Tanh()(x)
def relu(x): return ReLU()(x)
def leaky_relu(x, slope=0.01): return LeakyReLU(slope)(x)
def softmax(x, axis=-1): return Softmax(axis)(x)
def log_softmax(x, axis=-1): return LogSoftmax(axis)(x)
