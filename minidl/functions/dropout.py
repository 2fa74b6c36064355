"""Inverted dropout: in training, zero each element with probability ``p`` and scale the rest
by 1 / (1 - p), so that evaluation needs no rescaling.  The mask is drawn on the device with
``minidl.backend.device_rng`` (CuPy's Generator supports ``random``)."""
from __future__ import annotations

from minidl import backend as B
from minidl.autograd import Function, as_tensor

__all__ = ["dropout"]


class Dropout(Function):
    def __init__(self, p):
        self.p = p

    def forward(self, x):
        xp = B.get_array_module(x)
        keep = 1.0 - self.p
        u = B.device_rng(xp).random(x.shape, dtype=x.dtype)
        self.scale = (u < keep).astype(x.dtype) / x.dtype.type(keep)
        return x * self.scale

    def backward(self, gy):
        return gy * self.scale


def dropout(x, p=0.5, training=True):
    """Zero elements with probability ``p`` (0 <= p < 1) when ``training``; identity otherwise."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout: p must be in [0, 1), got {p}")
    x = as_tensor(x)
    if not training or p == 0.0:
        return x
    return Dropout(p)(x)
