"""Batch normalisation (Ioffe & Szegedy 2015), over (N, C), (N, C, L) or (N, C, H, W) inputs.

Per channel c, over the M = N (or N*H*W) values of the batch:

    mean_c = sum x / M,   var_c = sum (x - mean_c)^2 / M          (biased: used to normalise)
    xhat = (x - mean_c) / sqrt(var_c + eps),   y = gamma_c * xhat + beta_c

Training uses the batch statistics and updates the running ones in place, as PyTorch does:
``running = (1 - momentum) * running + momentum * batch`` with the UNBIASED variance
var_c * M / (M - 1).  Evaluation normalises with the running statistics instead (an affine map).

Backward (training), with k = gamma * inv_std and per-channel means over the batch:

    gx = k * (gy - mean(gy) - xhat * mean(gy * xhat)),  ggamma = sum(gy * xhat),  gbeta = sum(gy)

The passes (the statistics, the affine map, the gradient's sums and map) are
:class:`ReferencePasses` here, plain reductions over the batch, unless a kernel is registered
for op "batch_norm" (on the host: :mod:`minidl.kernels.host.bn_stats`); the Function asks
``kernels.select("batch_norm", geometry)`` once per call.  :func:`normalising_map`,
:func:`update_running` and :func:`checked_args` also serve the fused batch-norm ops.
"""
from __future__ import annotations

import numbers

from minidl import backend as B
from minidl import kernels
from minidl.autograd import Function, Tensor
from minidl.functions.arguments import as_input
from minidl.kernels.geometry import BatchNormGeometry

__all__ = ["batch_norm"]


def as3(a):
    """(N, C), (N, C, L) or (N, C, H, W) -> (N, C, L), a view."""
    return a.reshape(a.shape[0], a.shape[1], -1)


class ReferencePasses:
    """Batch norm's passes as plain reductions over the batch, on every backend (on a GPU each
    sum is one reduction kernel).  A kernel for op "batch_norm" replaces them (same methods:
    see :mod:`minidl.kernels.host.bn_stats`)."""

    def block_images(self, a):
        """Images of a (N, ...) per block of a pass: all of them."""
        return max(1, a.shape[0])

    def mean_var(self, xp, x3, keep_centred):
        """(mean, biased var, x3 - mean or None) of x3 (N, C, L) per channel, over N and L."""
        N, C, L = x3.shape
        M = x3.dtype.type(N * L)
        mean = x3.sum(axis=(0, 2)) / M
        xc = x3 - mean[:, None]
        var = (xc * xc).sum(axis=(0, 2)) / M
        return mean, var, xc if keep_centred else None

    def sums(self, xp, g3, c3):
        """(sum of g3, sum of g3 * c3) over N and L, each (C,)."""
        return g3.sum(axis=(0, 2)), (g3 * c3).sum(axis=(0, 2))

    def affine(self, xp, xc, scale, beta, y):
        """y (N, C, L) = xc * scale (+ beta)."""
        xp.multiply(xc, scale[:, None], out=y)
        if beta is not None:
            y += beta[:, None]

    def train_gradient(self, xp, g3, xc, a, b, scale, gx):
        """gx (N, C, L) = ((xc * b + a) - g3) * -scale."""
        xp.multiply(xc, b, out=gx)
        gx += a
        gx -= g3
        gx *= -scale[:, None]

    def eval_gradient(self, xp, g3, scale, gx):
        """gx (N, C, L) = g3 * scale."""
        xp.multiply(g3, scale[:, None], out=gx)


def batch_norm_passes(x, training):
    """The passes that run batch norm on x (N, C, ...): a kernel's, or the reference's."""
    x3 = as3(x)
    geometry = BatchNormGeometry(x3.shape[0], x3.shape[1], x3.shape[2], bool(training),
                                 x.dtype, B.backend_of(x).name)
    kernel = kernels.select("batch_norm", geometry)
    return ReferencePasses() if kernel is None else kernel.impl()


def normalising_map(fn, passes, xp, x3, gamma, keep_centred):
    """(mean, inv_std, scale = gamma * inv_std (inv_std without gamma), x3 - mean or None) of
    the batch-norm Function ``fn`` (its training flag, running statistics, momentum and eps)
    for x3 (N, C, L): the batch's statistics (by ``passes``), updating the running ones, when
    training; the running ones otherwise."""
    if fn.training:
        mean, var, xc = passes.mean_var(xp, x3, keep_centred)
        update_running(fn.running_mean, fn.running_var, mean, var,
                       x3.shape[0] * x3.shape[2], fn.momentum)
    else:
        mean = fn.running_mean.astype(x3.dtype)
        var = fn.running_var.astype(x3.dtype)
        xc = x3 - mean[:, None] if keep_centred else None
    inv_std = 1 / xp.sqrt(var + x3.dtype.type(fn.eps))
    return mean, inv_std, inv_std if gamma is None else gamma * inv_std, xc


def update_running(running_mean, running_var, mean, var, M, momentum):
    """running = (1 - momentum) * running + momentum * batch, in place, with the unbiased
    variance var * M / (M - 1); nothing when running_mean is None."""
    if running_mean is None:
        return
    m = momentum
    running_mean *= 1 - m
    running_mean += (m * mean).astype(running_mean.dtype)
    running_var *= 1 - m
    running_var += (m * M / (M - 1) * var).astype(running_var.dtype)


class BatchNorm(Function):
    """y = gamma * (x - mean) / sqrt(var + eps) + beta; see the module docstring."""

    fresh_grads = True  # gx and the two sums are made anew by each backward

    def __init__(self, running_mean, running_var, training, momentum, eps):
        self.running_mean, self.running_var = running_mean, running_var
        self.training, self.momentum, self.eps = training, momentum, eps

    def forward(self, x, gamma=None, beta=None):
        xp = B.get_array_module(x)
        self.passes = passes = batch_norm_passes(x, self.training)
        x3 = as3(x)
        # training: the batch's mean and variance (and the running ones updated); eval: the
        # running ones.  scale = gamma / sqrt(var + eps)
        mean, inv_std, scale, xc = normalising_map(self, passes, xp, x3, gamma,
                                                   keep_centred=True)
        y = xp.empty(x3.shape, dtype=x.dtype)
        passes.affine(xp, xc, scale, beta, y)          # y = (x - mean) * scale + beta
        self.xc, self.inv_std, self.scale = xc, inv_std, scale
        self.has_affine = gamma is not None
        return y.reshape(x.shape)

    def backward(self, gy):
        xp = B.get_array_module(gy)
        g3 = as3(gy)
        N, C, L = g3.shape
        xc, inv_std, scale = self.xc, self.inv_std, self.scale
        sum_gy, sum_gy_xc = self.passes.sums(xp, g3, xc)
        sum_gy_xhat = sum_gy_xc * inv_std                   # ggamma = sum(gy * xhat)
        gx = xp.empty(gy.shape, dtype=gy.dtype)  # returned whole: no view to copy
        if self.training:
            M = gy.dtype.type(N * L)
            # gx = k * (gy - sum_gy / M - xhat * sum_gy_xhat / M), xhat = xc * inv_std,
            # built in one buffer: ((xc * b + a) - gy) * -k
            b = (inv_std * sum_gy_xhat / M)[:, None]
            a = (sum_gy / M)[:, None]
            self.passes.train_gradient(xp, g3, xc, a, b, scale, as3(gx))
        else:                                               # an affine map: gx = k * gy
            self.passes.eval_gradient(xp, g3, scale, as3(gx))
        if self.has_affine:
            return gx, sum_gy_xhat, sum_gy
        return gx


def _check_channel_vector(v, name, C, x, where, allow_none=True):
    if v is None:
        if allow_none:
            return None
        raise ValueError(f"{where}: {name} is required when training=False")
    if isinstance(v, Tensor):
        arr = v.data
    elif B.is_array(v):
        arr = v
    else:
        raise TypeError(f"{where}: {name} must be a Tensor or a backend array, got "
                        f"{type(v).__name__}")
    if tuple(arr.shape) != (C,):
        raise ValueError(f"{where}: {name} must have shape ({C},) for an input with {C} "
                         f"channels, got {tuple(arr.shape)}")
    B.check_same_device(x.data, arr, names=("x", name), where=where)
    return v


def batch_norm(x, running_mean=None, running_var=None, gamma=None, beta=None, training=False,
               momentum=0.1, eps=1e-5):
    """Batch normalisation (as ``torch.nn.functional.batch_norm``).

    Parameters
    ----------
    x : Tensor or array (N, C), (N, C, L) or (N, C, H, W), floating.
    running_mean, running_var : arrays (C,) or None.  Required when ``training`` is False (they
        normalise); when training they are updated IN PLACE (unbiased variance) if given.
    gamma, beta : Tensors (C,) or None (no scale / no shift).
    training : normalise with the batch statistics (needs more than one value per channel).
    momentum : weight of the new batch in the running statistics (PyTorch's 0.1).
    eps : added to the variance (1e-5).

    Returns a Tensor of x's shape and dtype.
    """
    x, stats, affine = checked_args("batch_norm", x, running_mean, running_var, gamma, beta,
                                     training, momentum, eps)
    fn = BatchNorm(stats[0], stats[1], bool(training), float(momentum), float(eps))
    if affine[0] is None:
        return fn(x)
    return fn(x, affine[0], affine[1])


def checked_args(where, x, running_mean, running_var, gamma, beta, training, momentum, eps):
    """(x as a Tensor, [running_mean, running_var] arrays or None, [gamma, beta]) after the
    checks every batch-norm entry point makes; errors name ``where`` and the argument."""
    x = as_input(x, "x", where)
    if x.ndim not in (2, 3, 4):
        raise ValueError(f"{where}: x must be (N, C), (N, C, L) or (N, C, H, W), got shape "
                         f"{tuple(x.shape)}")
    if x.dtype.kind != "f":
        raise TypeError(f"{where}: x must be floating, got dtype {x.dtype}")
    C = x.shape[1]
    stats = []
    for name, v in (("running_mean", running_mean), ("running_var", running_var)):
        if isinstance(v, Tensor):
            v = v.data
        stats.append(_check_channel_vector(v, name, C, x, where, allow_none=training))
    if training and (stats[0] is None) != (stats[1] is None):
        raise ValueError(f"{where}: give both running_mean and running_var, or neither")
    affine = [_check_channel_vector(v, n, C, x, where)
              for n, v in (("gamma", gamma), ("beta", beta))]
    if (affine[0] is None) != (affine[1] is None):
        raise ValueError(f"{where}: give both gamma and beta, or neither")
    if training and x.size // C <= 1:
        raise ValueError(f"{where}: training needs more than one value per channel, got "
                         f"input shape {tuple(x.shape)}")
    if not isinstance(momentum, numbers.Real) or not 0 <= momentum <= 1:
        raise ValueError(f"{where}: momentum must be a number in [0, 1], got {momentum!r}")
    if not isinstance(eps, numbers.Real) or eps <= 0:
        raise ValueError(f"{where}: eps must be a positive number, got {eps!r}")
    return x, stats, affine
