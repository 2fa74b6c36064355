"""Pooling layers: MaxPool2d, AvgPool2d, GlobalAvgPool2d (no parameters)."""
from __future__ import annotations

from minidl.functions.arguments import output_hw as _output_hw, pool_args
from minidl.functions.pooling import avg_pool2d, global_avg_pool2d, max_pool2d
from minidl.layers.module import Module, check_input, short_pair

__all__ = ["MaxPool2d", "AvgPool2d", "GlobalAvgPool2d"]


def _check_pool_input(layer, x):
    x = check_input(layer, x, "(N, C, H, W)", ndim=4)
    if x.dtype.kind != "f":
        raise TypeError(f"{layer!r}: expected a floating input, got dtype {x.dtype}")
    return x


class _Pool2d(Module):

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = pool_args(
            type(self).__name__, kernel_size, stride, padding)

    def _check(self, x):
        x = _check_pool_input(self, x)
        _output_hw(repr(self), x.shape[2:], self.kernel_size, self.stride, self.padding)
        return x

    def extra_repr(self):
        s = f"kernel_size={short_pair(self.kernel_size)}"
        if self.stride != self.kernel_size:
            s += f", stride={short_pair(self.stride)}"
        if self.padding != (0, 0):
            s += f", padding={short_pair(self.padding)}"
        return s


class MaxPool2d(_Pool2d):
    """Maximum over windows: (N, C, H, W) -> (N, C, OH, OW), OH = (H + 2*pad - KH) // stride + 1.

    ``stride`` defaults to ``kernel_size``; padding (-inf) at most half the kernel.
    """

    def forward(self, x):
        return max_pool2d(self._check(x), self.kernel_size, self.stride, self.padding)


class AvgPool2d(_Pool2d):
    """Mean over windows (zero padding; ``count_include_pad`` as PyTorch's default)."""

    def __init__(self, kernel_size, stride=None, padding=0, count_include_pad: bool = True):
        super().__init__(kernel_size, stride, padding)
        self.count_include_pad = bool(count_include_pad)

    def forward(self, x):
        return avg_pool2d(self._check(x), self.kernel_size, self.stride, self.padding,
                          self.count_include_pad)

    def extra_repr(self):
        s = super().extra_repr()
        return s if self.count_include_pad else s + ", count_include_pad=False"


class GlobalAvgPool2d(Module):
    """Mean over H and W: (N, C, H, W) -> (N, C), or (N, C, 1, 1) with ``keepdims``."""

    def __init__(self, keepdims: bool = False):
        super().__init__()
        self.keepdims = bool(keepdims)

    def forward(self, x):
        return global_avg_pool2d(_check_pool_input(self, x), self.keepdims)

    def extra_repr(self):
        return "keepdims=True" if self.keepdims else ""
