"""Synchronised batch normalisation: batch norm whose statistics are those of the GLOBAL batch,
the union of every rank's local batch under data parallelism (MPI, NCCL).

Per channel c, over the M = sum_r M_r values of all ranks (M_r = N_r or N_r*H*W on rank r):

    forward   [sum x, M_r] --allreduce--> mean = sum x / M
              sum (x - mean)^2 --allreduce--> var = sum (x - mean)^2 / M     (biased)
              xhat = (x - mean) / sqrt(var + eps),   y = gamma * xhat + beta
    backward  [sum gy, sum gy * (x - mean)] --allreduce-->
              gx = k * (gy - sum gy / M - xhat * sum(gy * xhat) / M),   k = gamma * inv_std

The variance is the two-pass one (centred on the global mean, as the one-process reference
computes it), not E[x^2] - mean^2 from a single allreduce: that cancels catastrophically when
|mean| >> std, and equivalence with one process to 1e-6 in float64 (~1e-15 here) needs the
same arithmetic.  Cost: two small allreduces in forward ((C + 1) and C values) and one in
backward (2C values) per layer, through :mod:`minidl.distributed.comm` (MPI, NCCL, or nothing
in a one-process world, where this is exactly :func:`minidl.functions.batch_norm` with its
reference passes).

The gradients of gamma and beta returned are this rank's LOCAL sums: data parallelism then
averages (sums) them over the ranks like every other parameter's gradient, which gives the
global sums.  The running statistics are updated from the global mean and the unbiased global
variance var * M / (M - 1), so every rank keeps the same buffers.  Evaluation mode uses the
running statistics and communicates nothing.

Every rank must call it (and its backward) the same number of times in the same order: the
allreduces are collective.
"""
from __future__ import annotations

from minidl import backend as B
from minidl.autograd import Function
from minidl.distributed.comm import allreduce_sum_
from minidl.functions.normalization import (
    as3, batch_norm_passes, checked_args, normalising_map, update_running,
)

__all__ = ["sync_batch_norm", "SyncBatchNorm"]


class SyncBatchNorm(Function):
    """Batch norm over the global batch of all ranks; see the module docstring."""

    fresh_grads = True  # gx and the two sums are made anew by each backward

    def __init__(self, running_mean, running_var, training, momentum, eps, comm=None):
        self.running_mean, self.running_var = running_mean, running_var
        self.training, self.momentum, self.eps = training, momentum, eps
        self.comm = comm     # a minidl.distributed Communicator, or None: the world's

    def global_stats(self, xp, x3):
        """(mean, biased var, x3 - mean, M) over every rank's x3 (N_r, C, L), two allreduces.
        M (a Python float) is the global number of values per channel."""
        N, C, L = x3.shape
        first = xp.empty(C + 1, dtype=x3.dtype)     # one message: the sums and the count
        first[:C] = x3.sum(axis=(0, 2))
        first[C] = N * L     # exact in float32 up to 2**24 values per channel
        allreduce_sum_([first], comm=self.comm)
        M = float(first[C])
        mean = first[:C] / first[C]
        xc = x3 - mean[:, None]
        sq = (xc * xc).sum(axis=(0, 2))
        allreduce_sum_([sq], comm=self.comm)
        return mean, sq / first[C], xc, M

    def forward(self, x, gamma=None, beta=None):
        xp = B.get_array_module(x)
        self.passes = passes = batch_norm_passes(x, self.training)   # affine and gradient
        x3 = as3(x)
        if self.training:
            mean, var, xc, self.M = self.global_stats(xp, x3)
            update_running(self.running_mean, self.running_var, mean, var, self.M,
                           self.momentum)
            inv_std = 1 / xp.sqrt(var + x3.dtype.type(self.eps))
            scale = inv_std if gamma is None else gamma * inv_std
        else:   # the running statistics: an affine map, nothing to communicate
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
        C = g3.shape[1]
        xc, inv_std, scale = self.xc, self.inv_std, self.scale
        sum_gy, sum_gy_xc = self.passes.sums(xp, g3, xc)      # this rank's
        gx = xp.empty(gy.shape, dtype=gy.dtype)
        if self.training:
            total = xp.concatenate([sum_gy, sum_gy_xc])       # one message of 2C values
            allreduce_sum_([total], comm=self.comm)
            M = gy.dtype.type(self.M)
            # gx = k * (gy - sum_gy / M - xhat * sum_gy_xhat / M) with the GLOBAL sums,
            # built in one buffer as BatchNorm does: ((xc * b + a) - gy) * -k
            b = (inv_std * (total[C:] * inv_std) / M)[:, None]
            a = (total[:C] / M)[:, None]
            self.passes.train_gradient(xp, g3, xc, a, b, scale, as3(gx))
        else:
            self.passes.eval_gradient(xp, g3, scale, as3(gx))
        if self.has_affine:   # local sums: averaging the gradients over ranks adds them up
            return gx, sum_gy_xc * inv_std, sum_gy
        return gx


def sync_batch_norm(x, running_mean=None, running_var=None, gamma=None, beta=None,
                    training=False, momentum=0.1, eps=1e-5, comm=None):
    """Batch normalisation over the global batch of all ranks (as
    ``torch.nn.SyncBatchNorm``'s function); the arguments are
    :func:`minidl.functions.batch_norm`'s.

    Parameters
    ----------
    x : Tensor or array (N_r, C), (N_r, C, L) or (N_r, C, H, W), floating: this rank's share
        (N_r may differ between ranks; C, L, H, W may not).  Like batch_norm, each rank needs
        more than one value per channel when training.
    running_mean, running_var : arrays (C,) or None, updated IN PLACE from the global
        statistics when training (the same on every rank).
    gamma, beta : Tensors (C,) or None.
    comm : a :class:`minidl.distributed.Communicator`, or None for the world's (no
        communication in a one-process world).

    Returns a Tensor of x's shape and dtype.
    """
    x, stats, affine = checked_args("sync_batch_norm", x, running_mean, running_var, gamma,
                                     beta, training, momentum, eps)
    fn = SyncBatchNorm(stats[0], stats[1], bool(training), float(momentum), float(eps), comm)
    if affine[0] is None:
        return fn(x)
    return fn(x, affine[0], affine[1])
