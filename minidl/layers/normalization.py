"""Batch normalisation layers: BatchNorm1d for (N, C) or (N, C, L), BatchNorm2d for (N, C, H, W).

Learned gamma (ones) and beta (zeros) per channel; running_mean (zeros), running_var (ones) and
num_batches_tracked are buffers, so ``state_dict`` saves them.  ``train()`` mode normalises with
the batch statistics and updates the running ones (momentum 0.1, unbiased variance, as PyTorch);
``eval()`` mode normalises with the running statistics.
"""
from __future__ import annotations

import numbers

from minidl import backend as B
from minidl import init as initializers
from minidl.autograd import Parameter
from minidl.functions.normalization import batch_norm
from minidl.layers.module import Module, check_input

__all__ = ["BatchNorm1d", "BatchNorm2d"]


class _BatchNorm(Module):
    ranks: tuple = ()
    layout = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = True):
        super().__init__()
        name = type(self).__name__
        if not isinstance(num_features, numbers.Integral) or isinstance(num_features, bool) \
                or num_features <= 0:
            raise ValueError(f"{name}: num_features must be a positive int, got "
                             f"{num_features!r}")
        if not isinstance(eps, numbers.Real) or eps <= 0:
            raise ValueError(f"{name}: eps must be a positive number, got {eps!r}")
        if not isinstance(momentum, numbers.Real) or not 0 <= momentum <= 1:
            raise ValueError(f"{name}: momentum must be a number in [0, 1], got {momentum!r}")
        self.num_features, self.eps, self.momentum = int(num_features), float(eps), \
            float(momentum)
        C = self.num_features
        self.gamma = Parameter(initializers.ones((C,))) if affine else None
        self.beta = Parameter(initializers.zeros((C,))) if affine else None
        self.register_buffer("running_mean", initializers.zeros((C,)))
        self.register_buffer("running_var", initializers.ones((C,)))
        self.register_buffer("num_batches_tracked", B.get_xp().zeros((), dtype="int64"))

    def forward(self, x):
        return self.normalise(x, batch_norm)

    def normalise(self, x, op):
        """``op(x, running_mean, running_var, gamma, beta, training=, momentum=, eps=)`` after
        the input checks, counting the batch when training: ``forward`` passes
        :func:`minidl.functions.batch_norm`; the fused modules of :mod:`minidl.fusion` pass an
        op that also pools."""
        C = self.num_features
        x = check_input(self, x, self.layout.format(C=C), ndim=self.ranks, sizes={1: C})
        if x.dtype.kind != "f":
            raise TypeError(f"{self!r}: expected a floating input, got dtype {x.dtype}")
        self.count_batch(x)
        return op(x, self.running_mean, self.running_var, self.gamma, self.beta,
                  training=self.training, momentum=self.momentum, eps=self.eps)

    def count_batch(self, x):
        """Check that x (Tensor) is on the running statistics' device; count the batch when
        training."""
        B.check_same_device(self.running_mean, x.data,
                            names=("the layer's running statistics", "the input"),
                            where=repr(self))
        if self.training:
            count = self.num_batches_tracked
            count += 1  # in place: the running statistics are updated in place too

    def extra_repr(self):
        s = f"{self.num_features}"
        if self.eps != 1e-5:
            s += f", eps={self.eps}"
        if self.momentum != 0.1:
            s += f", momentum={self.momentum}"
        if self.gamma is None:
            s += ", affine=False"
        return s


class BatchNorm1d(_BatchNorm):
    """Batch norm over (N, C) (or (N, C, L)) inputs: statistics per channel over N (and L)."""
    ranks = (2, 3)
    layout = "with {C} features (N, {C}) or (N, {C}, L)"


class BatchNorm2d(_BatchNorm):
    """Batch norm over (N, C, H, W) inputs: statistics per channel over N, H and W."""
    ranks = (4,)
    layout = "with {C} channels (N, {C}, H, W)"
