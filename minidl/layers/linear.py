"""Dense (fully connected) layer and Flatten."""
from __future__ import annotations

import math

from minidl import init as initializers
from minidl.autograd import Parameter
from minidl.functions import flatten, linear
from minidl.layers.module import Module, check_input

__all__ = ["Linear", "Flatten"]

class Linear(Module):
    """y = x @ W^T + b, x (N, in_features) -> y (N, out_features).

    W (out_features, in_features) is initialised with ``init`` ("he" uniform by default, for
    ReLU; "xavier" for tanh/sigmoid; "torch" for PyTorch's U(-1/sqrt(in), 1/sqrt(in))); b
    starts at U(-1/sqrt(in), 1/sqrt(in)) as in PyTorch.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, init="he"):
        super().__init__()
        for name, v in (("in_features", in_features), ("out_features", out_features)):
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"Linear: {name} must be a positive int, got {v!r}")
        if init not in initializers.BY_NAME:
            raise ValueError(f"Linear: init must be one of {sorted(initializers.BY_NAME)}, "
                             f"got {init!r}")
        self.in_features, self.out_features = in_features, out_features
        self.W = Parameter(initializers.BY_NAME[init]((out_features, in_features)))
        self.b = Parameter(initializers.uniform((out_features,), 1 / math.sqrt(in_features))) \
            if bias else None

    def forward(self, x):
        x = check_input(self, x, f"(N, {self.in_features})", ndim=2,
                        sizes={1: self.in_features})
        return linear(x, self.W, self.b)

    def extra_repr(self):
        return f"{self.in_features}, {self.out_features}, bias={self.b is not None}"


class Flatten(Module):
    """(N, C, H, W) -> (N, C*H*W) (every axis from ``start_axis`` collapsed)."""

    def __init__(self, start_axis: int = 1):
        super().__init__()
        self.start_axis = start_axis

    def forward(self, x):
        return flatten(x, self.start_axis)

    def extra_repr(self):
        return f"start_axis={self.start_axis}" if self.start_axis != 1 else ""
