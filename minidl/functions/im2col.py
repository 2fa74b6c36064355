"""im2col and col2im, the data movement of a convolution as a matrix product, written to be
read (the reference :func:`minidl.functions.conv.conv2d` uses them; the fast host layouts are
in :mod:`minidl.kernels.host.conv_layout`).

    x (N, C, H, W)  --im2col-->  col (C*KH*KW, N*OH*OW)
    col[(c, i, j), (n, oh, ow)] = xpad[n, c, oh*sh + i*dh, ow*sw + j*dw]

Rows are ordered (c, kh, kw) like the columns of W reshaped (OC, C*KH*KW).  col2im is the
adjoint: it sums column gradients back onto the input, one slice-add per kernel tap (i, j).
"""
from __future__ import annotations

from minidl.kernels.geometry import conv_output_size

__all__ = ["im2col", "col2im"]


def _tap(i, j, OH, OW, stride, dilation):
    """The slices of the padded input under kernel tap (i, j) for every output position."""
    (sh, sw), (dh, dw) = stride, dilation
    return (slice(i * dh, i * dh + sh * (OH - 1) + 1, sh),
            slice(j * dw, j * dw + sw * (OW - 1) + 1, sw))


def im2col(xp, x, kernel, stride, padding, dilation):
    """col (C*KH*KW, N*OH*OW) of x (N, C, H, W), same dtype; ``kernel`` (KH, KW), the others
    (h, w) pairs."""
    N, C, H, W = x.shape
    (KH, KW), (ph, pw) = kernel, padding
    OH = conv_output_size(H, KH, stride[0], ph, dilation[0])
    OW = conv_output_size(W, KW, stride[1], pw, dilation[1])
    xpad = xp.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=x.dtype)    # 1. pad
    xpad[:, :, ph:ph + H, pw:pw + W] = x
    col = xp.empty((C, KH, KW, N, OH, OW), dtype=x.dtype)
    for i in range(KH):                                                 # 2. one copy per tap
        for j in range(KW):
            rows, cols = _tap(i, j, OH, OW, stride, dilation)
            col[:, i, j] = xpad[:, :, rows, cols].transpose(1, 0, 2, 3)
    return col.reshape(C * KH * KW, N * OH * OW)


def col2im(xp, gcol, x_shape, kernel, stride, padding, dilation):
    """gx (N, C, H, W) from column gradients gcol (C*KH*KW, N*OH*OW): the adjoint of
    :func:`im2col` (each tap's gradients added onto the padded input, then the padding cut
    off).  A new array."""
    N, C, H, W = x_shape
    (KH, KW), (ph, pw) = kernel, padding
    OH = conv_output_size(H, KH, stride[0], ph, dilation[0])
    OW = conv_output_size(W, KW, stride[1], pw, dilation[1])
    g6 = gcol.reshape(C, KH, KW, N, OH, OW)
    gpad = xp.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=gcol.dtype)
    for i in range(KH):                                                 # one add per tap
        for j in range(KW):
            rows, cols = _tap(i, j, OH, OW, stride, dilation)
            gpad[:, :, rows, cols] += g6[:, i, j].transpose(1, 0, 2, 3)
    return xp.ascontiguousarray(gpad[:, :, ph:ph + H, pw:pw + W])      # cut the padding off
