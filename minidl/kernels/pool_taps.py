"""Pooling windows as kernel taps: what the pooling reference (:mod:`minidl.functions.pooling`)
and the pooling kernels share.

    x (N, C, H, W)  ->  y (N, C, OH, OW);   xpad: x padded by (ph, pw) on each side

Tap (i, j) of every window is the strided view ``xpad[:, :, i::sh, j::sw]`` cropped to
(OH, OW): view[n, c, oh, ow] = xpad[n, c, oh*sh + i, ow*sw + j].  A pooling is then a loop over
the KH*KW taps of elementwise ops on output-sized arrays.

The pooling kernels' protocol (``kernel.impl``): ``impl(geometry)`` (a
:class:`minidl.kernels.geometry.PoolGeometry`) returns a runner whose ``forward(xp, x) -> y``
keeps what its ``backward(xp, gy) -> gx`` needs; gx is a new array (or a view of one).
"""
from __future__ import annotations

__all__ = ["tap", "taps", "pad", "avg_divisor", "plane_divisor"]


def tap(a, i, j, stride, OH, OW):
    """The view of tap (i, j) of a (N, C, Hp, Wp): view[n, c, oh, ow] = a[n, c, oh*sh + i,
    ow*sw + j], (N, C, OH, OW)."""
    sh, sw = stride
    return a[:, :, i:i + sh * (OH - 1) + 1:sh, j:j + sw * (OW - 1) + 1:sw]


def taps(a, KH, KW, stride, OH, OW):
    """(i, j, view) for every kernel tap of a (N, C, Hp, Wp), row-major."""
    for i in range(KH):
        for j in range(KW):
            yield i, j, tap(a, i, j, stride, OH, OW)


def pad(xp, x, padding, value):
    """x (N, C, H, W) padded by ``padding`` (ph, pw) with ``value``: (N, C, H + 2*ph,
    W + 2*pw), a new array; x itself when there is no padding."""
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    N, C, H, W = x.shape
    xpad = xp.full((N, C, H + 2 * ph, W + 2 * pw), value, dtype=x.dtype)
    xpad[:, :, ph:ph + H, pw:pw + W] = x
    return xpad


def avg_divisor(xp, g, dtype):
    """Average pooling's divisor for geometry ``g``: KH*KW as a scalar of ``dtype``, or (without
    ``count_include_pad``, when there is padding) per output position the number of real
    (unpadded) pixels under its window, (1, 1, OH, OW)."""
    if g.count_include_pad or g.padding == (0, 0):
        return dtype.type(g.KH * g.KW)
    ones = pad(xp, xp.ones((1, 1, g.H, g.W), dtype=dtype), g.padding, 0)
    count = xp.zeros((1, 1, g.OH, g.OW), dtype=dtype)
    for _, _, view in taps(ones, g.KH, g.KW, g.stride, g.OH, g.OW):
        count += view
    return count


def plane_divisor(divisor):
    """The divisor for (planes, OH, OW) arrays: the scalar, or (1, 1, OH, OW) as (OH, OW)."""
    return divisor.reshape(divisor.shape[2:]) if getattr(divisor, "ndim", 0) else divisor
