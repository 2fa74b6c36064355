"""Batch norm's passes on the host: per-channel sums as matrix-vector products, every pass in
cache-sized blocks of images, split over host threads.

    x3 (N, C, L)  (L = H*W, or 1)  ->  per-channel sums (C,) over N and L

Every per-channel reduction is one matrix-vector product, ``a.reshape(N, C, L) @ ones(L)``,
then a sum over N (several times faster than ``sum(axis=(0, 2))`` on a CPU), or one ``einsum``
for a sum of products (no temporary the size of x).  The variance pass centres a few images at
a time (``tuning.BATCH_NORM_BLOCK_BYTES``) and sums their squares while they are in cache; the
affine map and the gradient go by the same blocks.  The sums of the threads' parts are added in
order (deterministic for a given number of threads).  Measurements: docs/design/pooling.md.

The batch-norm kernels' protocol: ``kernel.impl()`` gives the passes (the reference's are
``minidl.functions.normalization.ReferencePasses``): ``mean_var(xp, x3, keep_centred)``,
``sums(xp, g3, c3)``, ``affine(xp, xc, scale, beta, y)``, ``train_gradient(xp, g3, xc, a, b,
scale, gx)``, ``eval_gradient(xp, g3, scale, gx)`` and ``block_images(a)``.
"""
from __future__ import annotations

from minidl.kernels import tuning
from minidl.kernels.registry import register
from minidl.parallel import parallel_for

__all__ = ["channel_sum", "channel_dot", "by_parts", "images_per_block", "HostBatchNorm"]


def channel_sum(xp, a3):
    """Sum of a (N, C, L) array over N and L -> (C,), as a product with ones."""
    ones = xp.ones(a3.shape[2], dtype=a3.dtype)
    return xp.matmul(a3, ones).sum(axis=0)


def channel_dot(xp, a3, b3):
    """Sum of a3 * b3 (N, C, L) over N and L -> (C,), without the product's temporary."""
    return xp.einsum("ncl,ncl->c", a3, b3)


def by_parts(xp, a3, work):
    """Per-channel sums over the batch by parts: ``work(lo, hi)`` returns a tuple of (C,)
    sums of images lo:hi; the parts run in parallel on a multi-core CPU and their tuples are
    added in order (a deterministic total for a given number of threads)."""
    results = {}

    def part(lo, hi):
        results[lo] = work(lo, hi)

    parallel_for(a3.shape[0], part, nbytes=a3.nbytes, like=a3)
    keys = sorted(results)
    if len(keys) == 1:
        return results[keys[0]]
    return tuple(sum(results[k][i] for k in keys) for i in range(len(results[keys[0]])))


def images_per_block(a, nbytes):
    """How many images of a (N, ...) to take at a time for about ``nbytes`` of them."""
    return max(1, nbytes // max(1, a[0].nbytes))


def _applies(g):
    return True, "on the host: sums as products with ones, passes in cache-sized blocks"


@register("batch_norm", "blocked", backends=("numpy",), applies=_applies, priority=10)
class HostBatchNorm:
    """Batch norm's passes on the host: product sums, cache-sized blocks, host threads."""

    def block_images(self, a):
        """Images of a (N, ...) per block of about ``tuning.BATCH_NORM_BLOCK_BYTES``."""
        return images_per_block(a, tuning.BATCH_NORM_BLOCK_BYTES)

    def mean_var(self, xp, x3, keep_centred):
        """Per-channel mean and biased variance of x3 (N, C, L), in two passes (the mean,
        then the centred squares), and the centred x3 - mean (N, C, L) when ``keep_centred``
        (else None: it is made a few images at a time, in cache, and dropped)."""
        N, C, L = x3.shape
        M = x3.dtype.type(N * L)
        mean = by_parts(xp, x3, lambda lo, hi: (channel_sum(xp, x3[lo:hi]),))[0] / M
        xc = xp.empty(x3.shape, dtype=x3.dtype) if keep_centred else None
        block = self.block_images(x3)

        def centre(lo, hi):
            total = xp.zeros(C, dtype=x3.dtype)
            scratch = None if keep_centred else xp.empty((min(block, hi - lo), C, L), x3.dtype)
            for b0 in range(lo, hi, block):
                b1 = min(hi, b0 + block)
                c = xc[b0:b1] if keep_centred else scratch[:b1 - b0]
                xp.subtract(x3[b0:b1], mean[:, None], out=c)
                total += channel_dot(xp, c, c)
            return (total,)

        var = by_parts(xp, x3, centre)[0] / M
        return mean, var, xc

    def sums(self, xp, g3, c3):
        """(sum of g3, sum of g3 * c3) over N and L, each (C,)."""
        return by_parts(xp, g3, lambda lo, hi: (
            channel_sum(xp, g3[lo:hi]), channel_dot(xp, g3[lo:hi], c3[lo:hi])))

    def affine(self, xp, xc, scale, beta, y):
        """y (N, C, L) = xc * scale (+ beta), a few images at a time (the add finds them in
        cache)."""
        block = self.block_images(xc)

        def part(lo, hi):
            for b0 in range(lo, hi, block):
                b1 = min(hi, b0 + block)
                xp.multiply(xc[b0:b1], scale[:, None], out=y[b0:b1])
                if beta is not None:
                    y[b0:b1] += beta[:, None]

        parallel_for(xc.shape[0], part, nbytes=xc.nbytes, like=xc)

    def train_gradient(self, xp, g3, xc, a, b, scale, gx):
        """gx (N, C, L) = ((xc * b + a) - g3) * -scale, in one buffer, a few images at a
        time (the in-place steps work in cache)."""
        block = self.block_images(g3)

        def part(lo, hi):
            for b0 in range(lo, hi, block):
                b1 = min(hi, b0 + block)
                out = gx[b0:b1]
                xp.multiply(xc[b0:b1], b, out=out)
                out += a
                out -= g3[b0:b1]
                out *= -scale[:, None]

        parallel_for(g3.shape[0], part, nbytes=g3.nbytes, like=g3)

    def eval_gradient(self, xp, g3, scale, gx):
        """gx (N, C, L) = g3 * scale."""
        parallel_for(g3.shape[0], lambda lo, hi: xp.multiply(g3[lo:hi], scale[:, None],
                                                             out=gx[lo:hi]),
                     nbytes=g3.nbytes, like=g3)
