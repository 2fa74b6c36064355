"""The dense layer's op -- the neuron: a weighted sum plus a bias.

    y = x @ W^T + b        x: (N, in), W: (out, in), b: (out,), y: (N, out)

W is stored (out, in) as in PyTorch, so that imported weights need no transpose.
Backward: gx = gy @ W, gW = gy^T @ x, gb = sum_N gy.
"""
from __future__ import annotations

from minidl.autograd import Function

__all__ = ["linear"]


class Linear(Function):
    fresh_grads = True  # gx, gW and gb are new products and sums

    def forward(self, x, W, b=None):
        self.x, self.W = x, W
        y = x @ W.T
        if b is not None:
            y += b
        return y

    def backward(self, gy):
        # only the gradients that are needed: the first layer's input (the data) needs none,
        # and its gx would be the largest product of the backward pass
        need = [t.requires_grad for t in self.inputs]
        gx = gy @ self.W if need[0] else None
        gW = gy.T @ self.x if need[1] else None
        if len(self.inputs) == 3:
            return gx, gW, gy.sum(axis=0) if need[2] else None
        return gx, gW


def linear(x, W, b=None):
    """Dense layer: ``x @ W.T + b`` with x (N, in), W (out, in), b (out,) or None."""
    xs = getattr(x, "shape", None)
    if xs is None or len(xs) != 2:
        raise ValueError(f"linear: x must be 2-D (N, in_features), got shape {xs}")
    if W.shape[1] != xs[1]:
        raise ValueError(f"linear: x has {xs[1]} features but W expects {W.shape[1]} "
                         f"(W shape {W.shape})")
    return Linear()(x, W) if b is None else Linear()(x, W, b)
