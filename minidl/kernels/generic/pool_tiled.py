"""Pooling whose windows tile the input exactly (stride = kernel, no padding, sizes divisible
by the kernel), so every pixel is in exactly one window.

    x (N, C, KH*OH, KW*OW)  ->  y (N, C, OH, OW)

Average ("tiled" of avg_pool2d): the mean of each window is a sum of the KW neighbours in every
row, taken as KW strided runs over the images' whole flat data (not OW-element rows), then of
KH such rows.  Backward writes gy / (KH*KW) into the first of each window's columns, then copies
it across the columns and down the rows.

Max ("tiled" of max_pool2d; 2x2 stride 2 with long rows takes "halving" first): the
reference's taps, but since the windows do not overlap backward WRITES each tap's share into
an uninitialised buffer instead of adding it into zeros.

On every backend.  Measurements: docs/design/pooling.md.
"""
from __future__ import annotations

from minidl.kernels.pool_taps import tap, taps
from minidl.kernels.registry import register
from minidl.parallel import parallel_for

__all__ = ["tiled_mean", "tiled_spread", "TiledMean", "TiledMax"]


def tiled_mean(xp, x, KH, KW):
    """Mean over the KH x KW windows that tile x (N, C, KH*OH, KW*OW): (N, C, OH, OW)."""
    N, C, H, W = x.shape
    OW = W // KW
    y = xp.empty((N, C, H // KH, OW), dtype=x.dtype)
    divisor = x.dtype.type(KH * KW)

    def part(lo, hi):  # images lo:hi (in parallel on a multi-core CPU)
        cols = x[lo:hi].reshape(-1, KW)  # each row's neighbours (a copy if x is a strided view)
        t = cols[:, 0] if KW == 1 else xp.add(cols[:, 0], cols[:, 1])
        for j in range(2, KW):
            t += cols[:, j]
        rows = t.reshape(-1, KH, OW)
        out = y[lo:hi].reshape(-1, OW)
        if KH == 1:
            xp.copyto(out, rows[:, 0])
        else:
            xp.add(rows[:, 0], rows[:, 1], out=out)
        for i in range(2, KH):
            out += rows[:, i]
        out /= divisor

    parallel_for(N, part, nbytes=x.nbytes, like=x)
    return y


def tiled_spread(xp, gy, KH, KW):
    """The gradient of :func:`tiled_mean`: gy (N, C, OH, OW) / (KH*KW) over every window."""
    N, C, OH, OW = gy.shape
    gx = xp.empty((N, C, OH * KH, OW * KW), dtype=gy.dtype)
    divisor = gy.dtype.type(KH * KW)

    def part(lo, hi):  # images lo:hi (in parallel on a multi-core CPU)
        windows = gx[lo:hi].reshape(-1, KH, OW, KW)  # (n*C*OH, KH, OW, KW), a view
        first = windows[:, 0]
        xp.divide(gy[lo:hi].reshape(-1, OW), divisor, out=first[:, :, 0])
        for j in range(1, KW):
            first[:, :, j] = first[:, :, 0]
        for i in range(1, KH):
            windows[:, i] = first

    parallel_for(N, part, nbytes=gx.nbytes, like=gy)
    return gx


def _applies(g):
    if g.tiles:
        return True, f"{g.KH}x{g.KW} windows tile {g.H}x{g.W}"
    return False, "windows do not tile x (stride != kernel, padding, or a remainder)"


@register("avg_pool2d", "tiled", backends=("numpy", "strict", "cupy"), applies=_applies,
          priority=10)
class TiledMean:
    """Average pooling of windows that tile x: row sums over long strided runs."""

    def __init__(self, geometry):
        self.geometry = geometry

    def forward(self, xp, x):
        return tiled_mean(xp, x, self.geometry.KH, self.geometry.KW)

    def backward(self, xp, gy):
        return tiled_spread(xp, gy, self.geometry.KH, self.geometry.KW)


@register("max_pool2d", "tiled", backends=("numpy", "strict", "cupy"), applies=_applies,
          priority=10)
class TiledMax:
    """Max pooling of windows that tile x: the taps, backward writing instead of adding."""

    def __init__(self, geometry):
        self.geometry = geometry

    def forward(self, xp, x):
        g = self.geometry
        y = xp.empty((g.N, g.C, g.OH, g.OW), dtype=x.dtype)

        def part(lo, hi):  # images lo:hi (in parallel on a multi-core CPU)
            yp = y[lo:hi]
            views = taps(x[lo:hi], g.KH, g.KW, g.stride, g.OH, g.OW)
            xp.copyto(yp, next(views)[2])
            for _, _, view in views:
                xp.maximum(yp, view, out=yp)

        parallel_for(g.N, part, nbytes=x.nbytes, like=x)
        self.x, self.y = x, y
        return y

    def backward(self, xp, gy):
        """Each window's gradient to its first maximum (row-major taps), written in place."""
        g = self.geometry
        gx = xp.empty((g.N, g.C, g.H, g.W), dtype=gy.dtype)
        last = g.KH * g.KW - 1

        def part(lo, hi):  # images lo:hi (in parallel on a multi-core CPU)
            y, gyp, gxp = self.y[lo:hi], gy[lo:hi], gx[lo:hi]
            free = None  # windows whose maximum no earlier tap has claimed
            for k, (i, j, view) in enumerate(taps(self.x[lo:hi], g.KH, g.KW, g.stride,
                                                  g.OH, g.OW)):
                hit = view == y
                if free is None:
                    free = ~hit
                else:
                    hit &= free
                    if k < last:
                        free ^= hit
                xp.multiply(gyp, hit, out=tap(gxp, i, j, g.stride, g.OH, g.OW))

        parallel_for(g.N, part, nbytes=gx.nbytes, like=gy)
        return gx
