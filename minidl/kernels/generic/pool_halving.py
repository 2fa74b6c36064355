"""Max pooling with 2x2 windows, stride 2, on even sizes -- the pooling of almost every CNN --
as two halvings on long runs instead of four taps of OW-element rows.

    x (N, C, H, W), H and W even  ->  y (N, C, H/2, W/2)

First across neighbouring columns (x as (pixels/2, 2): one flat strided run), then across
neighbouring rows.  Forward keeps which half won at each level (bools, 5/8 byte per input pixel
instead of the input and the output), and backward routes the gradient through them.  Ties go
to the left, then to the top, so the winner is the first maximum in row-major order, as in the
reference; a NaN makes both row tests false, so it passes no gradient, also as there.

On every backend; on the host it loses to the taps when rows are short (OW below
``tuning.HALVING_MIN_OW``: see docs/design/pooling.md).  :func:`halving_max` and
:func:`halving_route` also serve :mod:`minidl.functions.batchnorm_pool`.
"""
from __future__ import annotations

from minidl.kernels import tuning
from minidl.kernels.registry import register
from minidl.parallel import parallel_for

__all__ = ["halving_max", "halving_route", "Halving"]


def halving_max(xp, x):
    """2x2 stride-2 max pooling of x (N, C, H, W), H and W even: (y (N, C, H/2, W/2), the
    winners for :func:`halving_route`)."""
    N, C, H, W = x.shape
    x = xp.ascontiguousarray(x)
    y = xp.empty((N, C, H // 2, W // 2), dtype=x.dtype)
    right = xp.empty(N * C * H * W // 2, dtype=bool)   # column level: right one won
    top = xp.empty(N * C * H * W // 4, dtype=bool)     # row level: top row won
    bottom = xp.empty(N * C * H * W // 4, dtype=bool)  # row level: bottom row won
    per_image = C * H * W

    def part(lo, hi):
        pairs = x[lo:hi].reshape(-1, 2)
        r = right[lo * per_image // 2:hi * per_image // 2]
        xp.greater(pairs[:, 1], pairs[:, 0], out=r)
        rows = xp.maximum(pairs[:, 0], pairs[:, 1]).reshape(-1, 2, W // 2)
        t, b = top[lo * per_image // 4:hi * per_image // 4], \
            bottom[lo * per_image // 4:hi * per_image // 4]
        upper, lower = rows[:, 0], rows[:, 1]
        xp.greater_equal(upper, lower, out=t.reshape(upper.shape))
        xp.greater(lower, upper, out=b.reshape(upper.shape))
        xp.maximum(upper, lower, out=y[lo:hi].reshape(upper.shape))

    parallel_for(N, part, nbytes=x.nbytes, like=x)
    return y, (x.shape, right, top, bottom)


def halving_route(xp, gy, winners, gx, add=False, images=None):
    """gx (N, C, H, W, contiguous) = each window's gradient gy (N, C, H/2, W/2) at its winner
    and 0 elsewhere, or with ``add`` gx += that.  ``images`` (lo, hi) does only those images
    (the caller splits the work); None splits them over host threads."""
    (N, C, H, W), right, top, bottom = winners
    per_image = C * H * W

    def part(lo, hi):
        g = xp.ascontiguousarray(gy[lo:hi]).reshape(-1, W // 2)
        quarter = slice(lo * per_image // 4, hi * per_image // 4)
        rows = xp.empty((g.shape[0], 2, W // 2), dtype=gy.dtype)
        xp.multiply(g, top[quarter].reshape(g.shape), out=rows[:, 0])
        xp.multiply(g, bottom[quarter].reshape(g.shape), out=rows[:, 1])
        rows = rows.reshape(-1)
        pairs = gx[lo:hi].reshape(-1, 2)
        won = right[lo * per_image // 2:hi * per_image // 2]
        if add:
            to_right = rows * won
            pairs[:, 1] += to_right
            rows -= to_right
            pairs[:, 0] += rows
        else:
            xp.multiply(rows, won, out=pairs[:, 1])
            xp.subtract(rows, pairs[:, 1], out=pairs[:, 0])  # exact: g - g or g - 0

    if images is None:
        parallel_for(N, part, nbytes=gx.nbytes, like=gx)
    else:
        part(*images)


def _applies(g):
    if not (g.KH == g.KW == 2 and g.stride == (2, 2) and g.padding == (0, 0)):
        return False, "not 2x2 windows with stride 2 and no padding"
    if g.H % 2 or g.W % 2:
        return False, f"odd size {g.H}x{g.W}"
    if g.OW < tuning.HALVING_MIN_OW:
        return False, f"OW={g.OW} < HALVING_MIN_OW={tuning.HALVING_MIN_OW}"
    return True, f"2x2 stride 2 on even sizes, OW={g.OW} >= {tuning.HALVING_MIN_OW}"


@register("max_pool2d", "halving", backends=("numpy", "strict", "cupy"), applies=_applies,
          priority=30)
class Halving:
    """2x2 stride-2 max pooling on even sizes as two halvings (columns, then rows)."""

    def __init__(self, geometry):
        self.geometry = geometry

    def forward(self, xp, x):
        y, self.winners = halving_max(xp, x)
        return y

    def backward(self, xp, gy):
        gx = xp.empty(self.winners[0], dtype=gy.dtype)
        halving_route(xp, gy, self.winners, gx)
        return gx
