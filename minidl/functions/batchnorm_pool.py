"""Batch norm followed by 2x2 stride-2 max pooling, and optionally a ReLU, as one op: the
conv -> batch norm -> ReLU -> max pool block of the MNIST CNN (see
:meth:`minidl.layers.Sequential.forward`).

    x (N, C, H, W), H and W even  ->  y (N, C, H/2, W/2) = max_pool2d(batch_norm(x), 2)
    (with relu: relu(y), which is also max_pool2d(relu(batch_norm(x)), 2): ReLU keeps order)

Per channel, batch norm is the affine map  x -> (x - mean) * k + beta,  k = gamma / sqrt(var +
eps).  When k > 0 it keeps the order of its inputs, so the window's maximum of the normalised
values is the normalised maximum of x, at the same element:

    max_pool(batch_norm(x)) = batch_norm's map applied to max_pool(x)

bit for bit (rounding keeps the order too).  A channel with k < 0 reverses the order; it pools
-x instead (max of the map = the map of the minimum).  A channel with k == 0 (gamma == 0) maps
every window to four equal values, of which max pooling takes the first: it takes each
window's first element (its x-hat is what d gamma sums).  So forward reads x for the statistics
and the pooling, and normalises only the pooled quarter: no normalised x is written.

Backward gets gy for the pooled values.  Batch norm's gradient, written for the routed gradient
g (gy at each window's winner, 0 elsewhere),

    gx = k * (g - sum(g)/M - xhat * sum(g * xhat)/M),   xhat = (x - mean) / sqrt(var + eps)

needs only sums over the winners -- sum(g) = sum(gy), sum(g * xhat) = sum(gy * xhat of the
pooled values) -- and then is an affine map of x plus k * gy routed to the winners:
one pass over x-sized memory instead of the pool's scatter, batch norm's sums and its
gradient.  With the running statistics (evaluation), gx = k * g.

Batch norm's passes are the registry's ("batch_norm": on the host the blocked sums of
:mod:`minidl.kernels.host.bn_stats`), the pooling is :mod:`minidl.kernels.generic.pool_halving`'s.
Measurements: docs/design/pooling.md.
"""
from __future__ import annotations

from minidl import backend as B
from minidl.autograd import Function
from minidl.functions.activation import relu_into
from minidl.functions.normalization import (as3, batch_norm_passes, checked_args,
                                            normalising_map)
from minidl.kernels.generic.pool_halving import halving_max, halving_route
from minidl.parallel import parallel_for

__all__ = ["batch_norm_max_pool2d"]


class BatchNormMaxPool(Function):
    """y = max_pool2d(batch_norm(x), 2); see the module docstring."""

    fresh_grads = True  # gx and the two sums are made anew by each backward

    def __init__(self, running_mean, running_var, training, momentum, eps, relu):
        self.running_mean, self.running_var = running_mean, running_var
        self.training, self.momentum, self.eps, self.relu = training, momentum, eps, relu

    def forward(self, x, gamma=None, beta=None):
        xp = B.get_array_module(x)
        # batch norm's passes (the registry's "batch_norm" kernel on the host) and 2x2 halving
        self.passes = batch_norm_passes(x, self.training)
        mean, inv_std, scale, _ = normalising_map(self, self.passes, xp, as3(x), gamma,
                                                  keep_centred=False)
        per_channel = (slice(None), None, None)
        if bool(B.to_host(xp.any(scale <= 0))):
            # scale < 0: those channels pool -x (the map's maximum); scale == 0: x * 0 ties
            # everywhere, so each window's first element wins, as max pooling picks among the
            # map's four equal values, and its x is the one batch norm's gradient reads
            sign = xp.sign(scale).astype(x.dtype)[per_channel]
            pooled, self.winners = halving_max(xp, x * sign)
            pooled *= sign
            if bool(B.to_host(xp.any(scale == 0))):
                xp.copyto(pooled, x[:, :, ::2, ::2],
                          where=xp.broadcast_to(sign == 0, pooled.shape))
        else:
            pooled, self.winners = halving_max(xp, x)
        centred = pooled - mean[per_channel]   # (N, C, H/2, W/2): the winners' x - mean
        y = centred * scale[per_channel]
        if beta is not None:
            y += beta[per_channel]
        if self.relu:  # as F.relu: the gradient passes where y > 0; NaN propagates
            self.positive = y > 0
            relu_into(y, y)
        self.x, self.mean, self.inv_std, self.scale, self.centred = x, mean, inv_std, scale, \
            centred
        self.has_affine = gamma is not None
        return y

    def backward(self, gy):
        xp = B.get_array_module(gy)
        x, mean, inv_std, scale = self.x, self.mean, self.inv_std, self.scale
        N, C, H, W = x.shape
        if self.relu:
            gy = gy * self.positive
        sum_gy, sum_gy_xc = self.passes.sums(xp, as3(gy), as3(self.centred))
        sum_gy_xhat = sum_gy_xc * inv_std
        routed = gy * scale[:, None, None]   # k * gy, for the winners
        gx = xp.empty(x.shape, dtype=gy.dtype)
        if self.training:
            M = gy.dtype.type(N * H * W)
            # gx = (x - mean) * c1 + c0, then + k * gy at the winners
            c1 = (-scale * inv_std * sum_gy_xhat / M)[:, None, None]
            c0 = (-scale * sum_gy / M)[:, None, None]
            block = self.passes.block_images(x)   # the add finds the map's output in cache

            def images(lo, hi):
                for b0 in range(lo, hi, block):
                    b1 = min(hi, b0 + block)
                    out = gx[b0:b1]
                    xp.subtract(x[b0:b1], mean[:, None, None], out=out)
                    out *= c1
                    out += c0
                    halving_route(xp, routed, self.winners, gx, add=True, images=(b0, b1))

            parallel_for(N, images, nbytes=gx.nbytes, like=gx)
        else:
            halving_route(xp, routed, self.winners, gx)
        if self.has_affine:
            return gx, sum_gy_xhat, sum_gy
        return gx


def batch_norm_max_pool2d(x, running_mean=None, running_var=None, gamma=None, beta=None,
                          training=False, momentum=0.1, eps=1e-5, relu=False):
    """``max_pool2d(batch_norm(x, ...), 2)`` in one op, for x (N, C, H, W) with H and W even;
    with ``relu``, ``relu(max_pool2d(batch_norm(x, ...), 2))`` (the same as pooling after the
    ReLU: it keeps order).

    The arguments are :func:`minidl.functions.batch_norm`'s, and so are the running
    statistics' update and the values (bit for bit); the gradients agree to rounding (sums
    taken in another order).  A window's gradient goes to its first maximal element of the
    normalised values, as in the two ops, except where normalising rounds two different
    inputs to the same value: then it goes to the larger input.

    Returns a Tensor (N, C, H/2, W/2) of x's dtype.
    """
    x, stats, affine = checked_args("batch_norm_max_pool2d", x, running_mean, running_var,
                                     gamma, beta, training, momentum, eps)
    if x.ndim != 4 or x.shape[2] % 2 or x.shape[3] % 2 or min(x.shape[2:]) < 2:
        raise ValueError(f"batch_norm_max_pool2d: x must be (N, C, H, W) with H and W even "
                         f"(2x2 windows, stride 2), got shape {tuple(x.shape)}")
    fn = BatchNormMaxPool(stats[0], stats[1], bool(training), float(momentum), float(eps),
                          bool(relu))
    if affine[0] is None:
        return fn(x)
    return fn(x, affine[0], affine[1])
