"""What the fused conv -> batch norm -> (ReLU) -> 2x2 max pool kernels share (array code on
the output's 2x2 blocks): per-part channel moments merged without cancellation, the window
maxima with their winners, and routing a gradient back to the winners."""
from __future__ import annotations

from minidl.kernels.host.conv_common import WORKSPACE
from minidl.parallel import sum_in_order

__all__ = ["moments", "merged_statistics", "pool_windows", "route_to_winners"]


def moments(xp, a3, channel_axis):
    """(count, mean, centred sum of squares) per channel of a block a3: (n, C, L) with
    channel_axis 1, or (n, L, C) with channel_axis 2, summed over the other two axes (matrix-vector
    products with ones, the centred copy a scratch array)."""
    dt, L = a3.dtype, a3.shape[2 if channel_axis == 1 else 1]
    count = a3.shape[0] * L
    ones = xp.ones(L, dtype=dt)

    def channel_sums(a):
        per_image = xp.matmul(a, ones) if channel_axis == 1 else xp.matmul(ones, a)
        return per_image.sum(axis=0)

    mean = channel_sums(a3) / dt.type(count)
    d = WORKSPACE.take(xp, a3.shape, dt)
    xp.subtract(a3, mean[:, None] if channel_axis == 1 else mean, out=d)
    xp.multiply(d, d, out=d)
    m2 = channel_sums(d)
    WORKSPACE.give(d)
    return count, mean, m2


def merged_statistics(parts):
    """(mean, biased variance) of the whole batch from each block's (count, mean, centred sum
    of squares), merged in order (Chan, Golub & LeVeque): the blocks' sums of squares about
    their own means, plus each block's count times its mean's squared distance from the batch
    mean."""
    dt = parts[0][1].dtype
    total = sum(c for c, _, _ in parts)
    mean = sum_in_order([m * dt.type(c) for c, m, _ in parts]) / dt.type(total)
    m2 = sum_in_order([s + dt.type(c) * (m - mean) ** 2 for c, m, s in parts])
    return mean, m2 / dt.type(total)


def pool_windows(xp, slabs, flip, pooled, right_top, right_bottom, bottom):
    """pooled = each window's maximum over the four slabs (4, ...) -- its places (0, 0), (0, 1),
    (1, 0), (1, 1) -- or its minimum where flip (broadcast to a slab) is -1, and the first
    winner in that order: right_top (the right one of the top pair won it), right_bottom,
    bottom (the bottom pair won).  Where flip is 0 (gamma == 0: batch norm maps the window to
    four equal values, and max pooling takes the first) the winner is place (0, 0) and pooled
    its value.  The outputs are slab-shaped."""
    flipped = first = None
    if flip is not None:
        if bool((flip == 0).any()):
            first = slabs[0]
        flipped = WORKSPACE.take(xp, slabs.shape, slabs.dtype)
        xp.multiply(slabs, flip, out=flipped)
        slabs = flipped
    top = WORKSPACE.take(xp, pooled.shape, pooled.dtype)
    low = WORKSPACE.take(xp, pooled.shape, pooled.dtype)
    xp.greater(slabs[1], slabs[0], out=right_top)
    xp.maximum(slabs[0], slabs[1], out=top)
    xp.greater(slabs[3], slabs[2], out=right_bottom)
    xp.maximum(slabs[2], slabs[3], out=low)
    xp.greater(low, top, out=bottom)
    xp.maximum(top, low, out=pooled)
    if flip is not None:
        pooled *= flip
    if first is not None:   # the flipped slabs are all 0 there: every place ties, (0, 0) won
        xp.copyto(pooled, first, where=xp.broadcast_to(flip == 0, pooled.shape))
    WORKSPACE.give(top, low, flipped)


def route_to_winners(xp, g, slabs, right_top, right_bottom, bottom):
    """slabs (4, ...) += g (slab-shaped, overwritten) at each window's winner, as
    :func:`pool_windows` recorded it."""
    low = WORKSPACE.take(xp, g.shape, g.dtype)
    part = WORKSPACE.take(xp, g.shape, g.dtype)
    xp.multiply(g, bottom, out=low)
    g -= low                                    # the top pair's: exact, g - g or g - 0
    for pair, (left, right), won in ((g, (0, 1), right_top), (low, (2, 3), right_bottom)):
        xp.multiply(pair, won, out=part)
        slabs[right] += part
        pair -= part
        slabs[left] += pair
    WORKSPACE.give(low, part)
