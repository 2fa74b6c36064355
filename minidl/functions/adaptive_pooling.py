"""Adaptive average pooling to a fixed output size, as ``torch.nn.AdaptiveAvgPool2d``.

    x (N, C, H, W) -> y (N, C, OH, OW)
    output row i averages input rows  floor(i*H/OH) ... ceil((i+1)*H/OH) - 1   (likewise columns)

The bins are products of a row bin and a column bin, so the pooling is separable: with the
averaging matrices Ph (OH, H) and Pw (OW, W), Ph[i, h] = 1/len(row bin i) inside the bin,

    forward   y  = Ph @ x @ Pw^T          backward   gx = Ph^T @ gy @ Pw

two small matrix products per image plane, for any H, W (bins may overlap when H % OH != 0).
When the input already has the output size (AlexNet at 224x224: 6x6) it is the identity.
"""
from __future__ import annotations

import numbers

import numpy

from minidl import backend as B
from minidl.autograd import Function
from minidl.functions.arguments import as_input as _as_input

__all__ = ["adaptive_avg_pool2d", "adaptive_bins", "adaptive_output_size"]


def adaptive_bins(size: int, out: int) -> list[tuple[int, int]]:
    """``[(start, end), ...]`` of the ``out`` bins over ``size`` inputs (PyTorch's rule)."""
    return [((i * size) // out, -((-(i + 1) * size) // out)) for i in range(out)]


def _averaging_matrix(size, out, dtype):
    P = numpy.zeros((out, size), dtype=dtype)
    for i, (s, e) in enumerate(adaptive_bins(size, out)):
        P[i, s:e] = 1.0 / (e - s)
    return P


class AdaptiveAvgPool2d(Function):
    def __init__(self, output_size):
        self.output_size = output_size

    def forward(self, x):
        xp = B.get_array_module(x)
        N, C, H, W = x.shape
        OH, OW = self.output_size
        self.identity = (H, W) == (OH, OW)
        if self.identity:
            return x.copy()
        name = B.backend_of(x).name
        self.Ph = B.to_device(_averaging_matrix(H, OH, x.dtype), name)
        self.Pw = B.to_device(_averaging_matrix(W, OW, x.dtype), name)
        return xp.matmul(xp.matmul(self.Ph, x), self.Pw.T)

    def backward(self, gy):
        xp = B.get_array_module(gy)
        if self.identity:
            return gy
        return xp.matmul(xp.matmul(self.Ph.T, gy), self.Pw)


def adaptive_output_size(output_size):
    items = tuple(output_size) if isinstance(output_size, (tuple, list)) \
        else (output_size, output_size)
    if len(items) != 2 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                                  and v >= 1 for v in items):
        raise ValueError(f"adaptive_avg_pool2d: output_size must be a positive int or a pair "
                         f"of positive ints, got {output_size!r}")
    return int(items[0]), int(items[1])


def adaptive_avg_pool2d(x, output_size):
    """Average-pool (N, C, H, W) to (N, C, OH, OW) whatever H and W are.

    Parameters
    ----------
    x : Tensor or array (N, C, H, W), floating.
    output_size : int or (OH, OW).

    >>> adaptive_avg_pool2d(x, 6).shape    # x (1, 256, 13, 13), AlexNet at 227x227 -> (6, 6)
    (1, 256, 6, 6)
    """
    x = _as_input(x, "x", "adaptive_avg_pool2d")
    if x.ndim != 4:
        raise ValueError(f"adaptive_avg_pool2d: x must be 4-D (N, C, H, W), got shape "
                         f"{tuple(x.shape)}")
    if x.dtype.kind != "f":
        raise TypeError(f"adaptive_avg_pool2d: x must be floating, got dtype {x.dtype}")
    return AdaptiveAvgPool2d(adaptive_output_size(output_size))(x)
