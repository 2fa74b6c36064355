"""Losses: multi-class log loss (softmax cross-entropy from logits), binary log loss from
logits, mean squared error.

All take ``reduction`` = "mean" (default), "sum" or "none".
"""
from __future__ import annotations

from minidl import backend as B
from minidl.autograd import Function, as_tensor
from minidl.functions.activation import log_softmax_array

__all__ = ["softmax_cross_entropy", "cross_entropy", "binary_cross_entropy_with_logits",
           "mse_loss"]

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _reduce(xp, per_sample, reduction):
    if reduction == "none":
        return per_sample
    total = per_sample.sum()
    return total / per_sample.dtype.type(per_sample.shape[0]) if reduction == "mean" else total


def _reduce_grad(xp, gy, n, reduction, dtype):
    """Gradient of the reduction, shaped (N, 1) to broadcast over classes."""
    if reduction == "none":
        return gy.reshape(n, 1)
    scale = gy / dtype.type(n) if reduction == "mean" else gy
    return xp.broadcast_to(scale.reshape(1, 1), (n, 1))


class SoftmaxCrossEntropy(Function):
    """Log loss of softmax(logits) against targets, fused and numerically stable.

    logits : (N, C) float.  targets : (N,) integer class indices, or (N, C) probabilities
    (one-hot).  Per sample: L = -sum_c t_c * log_softmax(x)_c.  Gradient: (softmax(x) - t) / N.
    """

    def __init__(self, reduction="mean"):
        self.reduction = reduction

    def forward(self, logits, targets):
        xp = B.get_array_module(logits)
        n, c = logits.shape
        logp = log_softmax_array(xp, logits, axis=1)
        if targets.ndim == 1:
            self.t_index = targets
            per = -logp[xp.arange(n), targets]
        else:
            self.t_index = None
            per = -(targets * logp).sum(axis=1)
        self.logp, self.targets = logp, targets
        return _reduce(xp, per, self.reduction)

    def backward(self, gy):
        xp = B.get_array_module(gy)
        n, c = self.logp.shape
        g = xp.exp(self.logp)
        if self.t_index is not None:
            g[xp.arange(n), self.t_index] -= 1
        else:
            g = g * self.targets.sum(axis=1, keepdims=True) - self.targets
        return g * _reduce_grad(xp, gy, n, self.reduction, g.dtype), None


def softmax_cross_entropy(logits, targets, reduction="mean"):
    """Multi-class log loss from raw scores.

    Parameters
    ----------
    logits : Tensor (N, C), float32/float64.
    targets : array or Tensor, (N,) int class indices in [0, C), or (N, C) probabilities.
    reduction : "mean" | "sum" | "none".
    """
    _check_reduction(reduction)
    logits = as_tensor(logits)
    t = targets.data if hasattr(targets, "creator") else targets
    if logits.ndim != 2:
        raise ValueError(f"softmax_cross_entropy: logits must be 2-D (N, C), got shape "
                         f"{logits.shape}")
    if not B.is_array(t):
        raise TypeError(f"softmax_cross_entropy: targets must be an array or Tensor, got "
                        f"{type(t).__name__}")
    n, c = logits.shape
    if t.ndim == 1:
        if t.dtype.kind not in "iu":
            raise TypeError(f"softmax_cross_entropy: 1-D targets must hold integer class "
                            f"indices, got dtype {t.dtype}")
        if t.shape[0] != n:
            raise ValueError(f"softmax_cross_entropy: targets must have shape ({n},) to match "
                             f"logits {logits.shape}, got {t.shape}")
        # a negative index would silently pick a class from the end (and CuPy does not
        # bounds-check at all); one reduction and one device->host read per call, the min/max
        # for the message only on the error path
        if n and bool(((t < 0) | (t >= c)).any()):
            raise ValueError(f"softmax_cross_entropy: targets must be class indices in "
                             f"[0, {c}), got values in [{t.min().item()}, {t.max().item()}]")
    elif t.shape != (n, c):
        raise ValueError(f"softmax_cross_entropy: targets must be (N,) indices or (N, C) = "
                         f"{(n, c)} probabilities, got shape {t.shape}")
    elif t.dtype != logits.dtype:
        t = t.astype(logits.dtype)
    return SoftmaxCrossEntropy(reduction)(logits, t)


cross_entropy = softmax_cross_entropy


class BinaryCrossEntropyWithLogits(Function):
    """L = max(x, 0) - x * t + log(1 + exp(-|x|)) per element (stable); gx = sigmoid(x) - t."""

    def __init__(self, reduction="mean"):
        self.reduction = reduction

    def forward(self, x, t):
        xp = B.get_array_module(x)
        self.x, self.t = x, t
        per = xp.maximum(x, 0) - x * t + xp.log1p(xp.exp(-xp.abs(x)))
        if self.reduction == "none":
            return per
        total = per.sum()
        return total / x.dtype.type(per.size) if self.reduction == "mean" else total

    def backward(self, gy):
        xp = B.get_array_module(gy)
        half = self.x.dtype.type(0.5)
        g = (xp.tanh(self.x * half) * half + half) - self.t
        if self.reduction == "mean":
            return g * (gy / g.dtype.type(g.size)), None
        return g * gy, None


def binary_cross_entropy_with_logits(logits, targets, reduction="mean"):
    """Binary log loss from raw scores; ``targets`` in [0, 1] with the shape of ``logits``."""
    _check_reduction(reduction)
    logits = as_tensor(logits)
    t = targets.data if hasattr(targets, "creator") else targets
    if t.shape != logits.shape:
        raise ValueError(f"binary_cross_entropy_with_logits: targets must have the shape of "
                         f"logits {logits.shape}, got {t.shape}")
    return BinaryCrossEntropyWithLogits(reduction)(logits, t.astype(logits.dtype))


def mse_loss(y, t, reduction="mean"):
    """Mean squared error: mean((y - t)^2) over all elements."""
    _check_reduction(reduction)
    y = as_tensor(y)
    t_shape = t.shape
    if t_shape != y.shape:
        raise ValueError(f"mse_loss: t must have the shape of y {y.shape}, got {t_shape}")
    if B.is_array(t) and t.dtype != y.dtype:
        t = t.astype(y.dtype)  # a float64 target must not promote a float32 model's loss
    d = y - t
    sq = d * d
    if reduction == "none":
        return sq
    return sq.mean() if reduction == "mean" else sq.sum()
