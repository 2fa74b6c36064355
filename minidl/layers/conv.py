"""2-D convolution layer: owns W (OC, C/groups, KH, KW) and b (OC,), calls ``conv2d``."""
from __future__ import annotations

import math
import numbers

from minidl import init as initializers
from minidl.autograd import Parameter
from minidl.functions.arguments import output_hw, pair
from minidl.functions.conv import conv2d
from minidl.layers.module import Module, check_input, short_pair

__all__ = ["Conv2d"]


class Conv2d(Module):
    """x (N, in_channels, H, W) -> y (N, out_channels, OH, OW), a learned 2-D convolution.

    OH = (H + 2*padding - dilation*(KH - 1) - 1) // stride + 1 (likewise OW).  W is initialised
    with ``init`` ("he" uniform by default, fan_in = in_channels/groups * KH * KW; "he_normal",
    "xavier", "xavier_normal", "torch" = PyTorch's U(-1/sqrt(fan_in), 1/sqrt(fan_in))), drawn
    on the host and moved to the active backend; b starts at U(-1/sqrt(fan_in),
    1/sqrt(fan_in)) as in PyTorch.

    >>> conv = Conv2d(1, 32, 3, padding=1)      # (N, 1, 28, 28) -> (N, 32, 28, 28)
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, init="he"):
        super().__init__()
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels),
                        ("groups", groups)):
            if not isinstance(v, numbers.Integral) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"Conv2d: {name} must be a positive int, got {v!r}")
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"Conv2d: in_channels ({in_channels}) and out_channels "
                             f"({out_channels}) must both be divisible by groups ({groups})")
        if init not in initializers.BY_NAME:
            raise ValueError(f"Conv2d: init must be one of {sorted(initializers.BY_NAME)}, "
                             f"got {init!r}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = pair(kernel_size, "kernel_size", "Conv2d", 1)
        self.stride = pair(stride, "stride", "Conv2d", 1)
        self.padding = pair(padding, "padding", "Conv2d", 0)
        self.dilation = pair(dilation, "dilation", "Conv2d", 1)
        self.groups = int(groups)
        KH, KW = self.kernel_size
        shape = (self.out_channels, self.in_channels // self.groups, KH, KW)
        self.W = Parameter(initializers.BY_NAME[init](shape))
        fan_in = initializers.fans(shape)[0]
        self.b = Parameter(initializers.uniform((self.out_channels,), 1 / math.sqrt(fan_in))) \
            if bias else None

    def forward(self, x):
        C = self.in_channels
        x = check_input(self, x, f"with {C} channels (N, {C}, H, W)", ndim=4, sizes={1: C})
        output_hw(repr(self), x.shape[2:], self.kernel_size, self.stride, self.padding,
                   self.dilation)
        return conv2d(x, self.W, self.b, self.stride, self.padding, self.dilation, self.groups)

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={short_pair(self.kernel_size)}"
        for name, default in (("stride", 1), ("padding", 0), ("dilation", 1)):
            v = getattr(self, name)
            if v != (default, default):
                s += f", {name}={short_pair(v)}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.b is None:
            s += ", bias=False"
        return s
