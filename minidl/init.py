"""Weight initialisers.  Values are drawn on the host from the seeded generator
``minidl.backend.host_rng()`` and moved to the active backend, so a seed gives the same initial
weights on NumPy and CuPy (CuPy's Generator has no ``normal``).

fan_in / fan_out: for W (out, in) they are in / out; for conv W (OC, C, KH, KW) they are
C*KH*KW / OC*KH*KW.
"""
from __future__ import annotations

import math

import numpy

from minidl import backend as B

__all__ = ["BY_NAME", "fans", "he_normal", "he_uniform", "fan_in_uniform", "xavier_normal",
           "xavier_uniform", "uniform", "zeros", "ones"]


def fans(shape) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of ``shape`` (out, in, *kernel)."""
    if len(shape) < 2:
        raise ValueError(f"fans: weight shape must have at least 2 dims, got {tuple(shape)}")
    receptive = int(numpy.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _device(host, dtype):
    return B.to_device(host.astype(dtype or B.get_default_dtype()))


def he_normal(shape, dtype=None):
    """N(0, 2 / fan_in): for ReLU networks (He et al. 2015)."""
    std = math.sqrt(2.0 / fans(shape)[0])
    return _device(B.host_rng().standard_normal(shape) * std, dtype)


def he_uniform(shape, dtype=None):
    """U(-b, b) with b = sqrt(6 / fan_in)."""
    bound = math.sqrt(6.0 / fans(shape)[0])
    return uniform(shape, bound, dtype)


def fan_in_uniform(shape, dtype=None):
    """U(-b, b) with b = 1 / sqrt(fan_in): PyTorch's default for ``nn.Linear`` and ``nn.Conv2d``
    (``kaiming_uniform_`` with a = sqrt(5)).  sqrt(6) times smaller than :func:`he_uniform`;
    in front of batch norm, where the scale of W does not change the output, smaller weights
    mean larger relative steps and faster early training."""
    return uniform(shape, 1.0 / math.sqrt(fans(shape)[0]), dtype)


def xavier_normal(shape, dtype=None):
    """N(0, 2 / (fan_in + fan_out)): for tanh/sigmoid networks (Glorot & Bengio 2010)."""
    fi, fo = fans(shape)
    return _device(B.host_rng().standard_normal(shape) * math.sqrt(2.0 / (fi + fo)), dtype)


def xavier_uniform(shape, dtype=None):
    """U(-b, b) with b = sqrt(6 / (fan_in + fan_out))."""
    fi, fo = fans(shape)
    return uniform(shape, math.sqrt(6.0 / (fi + fo)), dtype)


def uniform(shape, bound, dtype=None):
    """U(-bound, bound)."""
    return _device(B.host_rng().uniform(-bound, bound, size=shape), dtype)


def zeros(shape, dtype=None):
    return B.get_xp().zeros(shape, dtype=dtype or B.get_default_dtype())


def ones(shape, dtype=None):
    return B.get_xp().ones(shape, dtype=dtype or B.get_default_dtype())


# The initialisers by the names the layers' ``init`` argument takes.
BY_NAME = {"he": he_uniform, "he_normal": he_normal, "torch": fan_in_uniform,
           "xavier": xavier_uniform, "xavier_normal": xavier_normal}
