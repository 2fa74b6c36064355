"""The fused conv -> batch norm -> (ReLU) -> 2x2 max pool op's Winograd kernel (array code; the
op and its batch norm map are :mod:`minidl.functions.conv_bn_pool`).

Winograd's F(2x2, 3x3) (:class:`minidl.kernels.host.winograd.Winograd3x3`, whose steps this
kernel runs) makes the convolution's output in 2x2 blocks: a chunk of n images comes out of
its output transform as (2, 2, th, tw, n, OC), th = OH/2, tw = OW/2.  Those blocks are exactly
the pooling windows, so the four elements of every window lie in four contiguous slabs (R,
OC), R = th*tw*n, with the channels last.  Per chunk, while its blocks are in cache: the
chunk's channel moments, and the window maxima (three elementwise maxima of slabs) with the
winners' positions.  Backward writes batch norm's gradient straight into the 2x2 blocks that
Winograd's backward step takes.  The output never goes to NCHW (docs/design/conv.md).
"""
from __future__ import annotations

from minidl.kernels import tuning
from minidl.kernels.host.conv_common import WORKSPACE, winograd_verdict
from minidl.kernels.host.fused_conv_bn_pool_common import moments, pool_windows, route_to_winners
from minidl.kernels.host.winograd import Winograd3x3
from minidl.kernels.registry import register

__all__ = ["WinogradBlocksPool"]


@register("conv2d_batch_norm_max_pool2d", "winograd", backends=("numpy",),
          applies=winograd_verdict, priority=20,
          summary="Winograd's output blocks straight into statistics and window maxima")
class WinogradBlocksPool:
    """One call's convolution blocks, statistics and window maxima.  ``keep_for_W``: keep
    Winograd's input tiles for gW (up to CONV_KEEP_COL_BYTES); ``recorded``: keep U for gx."""

    def __init__(self, xp, x_shape, W_shape, padding, dtype, keep_for_W, recorded, training):
        N, OC = x_shape[0], W_shape[0]
        self.wino = wino = Winograd3x3(x_shape, W_shape, padding, dtype, WORKSPACE,
                                       chunk_bytes=tuning.FUSED_WINOGRAD_CHUNK_BYTES)
        self.keep_for_W, self.recorded, self.training = keep_for_W, recorded, training
        self.th, self.tw = wino.geom.th, wino.geom.tw
        self.quarter_size = self.th * self.tw   # pooled values per image and channel
        self.chunks = wino.chunks
        self.Y = WORKSPACE.take(xp, 4 * OC * N * self.quarter_size, dtype)   # the conv's blocks
        self.pooled = xp.empty(N * self.quarter_size * OC, dtype=dtype)
        # the winners: the right one of the top pair, of the bottom pair; the bottom pair
        self.right_top, self.right_bottom, self.bottom = (
            xp.empty(N * self.quarter_size * OC, dtype=bool) for _ in range(3))

    def forward(self, xp, x, W, flip):
        """Per chunk: the conv's blocks (kept in Y), their (count, mean, centred sum of
        squares) per channel when training (returned, one per chunk), and the window maxima
        (minima where ``flip`` (OC,) is -1) into :attr:`pooled` with their winners."""
        wino, OC = self.wino, W.shape[0]
        parts = [None] * len(self.chunks)
        keep_V = self.keep_for_W and wino.V_bytes() <= tuning.CONV_KEEP_COL_BYTES
        U = wino.filter_transform(xp, W, keep_V)
        Ut = U.transpose(0, 2, 1)

        def chunk(k):
            n0, n1 = self.chunks[k]
            yt = wino.forward_blocks(xp, x, n0, n1, Ut, self.slot(k))
            slabs = yt.reshape(4, -1, OC)     # (4, R, OC): the four places of every window
            R = slabs.shape[1]
            if self.training:
                parts[k] = moments(xp, yt.reshape(1, 4 * R, OC), channel_axis=2)
            pool_windows(xp, slabs, flip, self.quarter(self.pooled, k),
                         self.quarter(self.right_top, k), self.quarter(self.right_bottom, k),
                         self.quarter(self.bottom, k))

        wino._each_chunk(lambda k, n0, n1: chunk(k), nbytes=x.shape[0] * OC * 4 * self.th *
                         self.tw * wino.itemsize, like=x)
        wino.U = U if self.recorded else None
        return parts

    def slot(self, k):
        """Chunk k's part of the kept blocks Y, 4*OC*R elements."""
        n0, n1 = self.chunks[k]
        per_image = 4 * self.quarter_size * self.wino.geom.OC
        return self.Y[per_image * n0:per_image * n1]

    def quarter(self, flat, k):
        """Chunk k's (R, OC) part of a per-window array kept chunk after chunk."""
        n0, n1 = self.chunks[k]
        OC = self.wino.geom.OC
        per_image = self.quarter_size * OC
        return flat[per_image * n0:per_image * n1].reshape(-1, OC)

    def backward(self, xp, x, g, scale, c1c0, need_x, need_W):
        """(gx, gW) from the pooled gradient ``g`` (flat, chunk after chunk in (R, OC) quarters),
        batch norm's ``scale`` (OC,) and, in training, its affine map ``c1c0`` of the conv's
        output (None in evaluation)."""
        wino, dt = self.wino, x.dtype
        OC = wino.geom.OC
        gx = xp.empty(wino.x_shape, dtype=dt) if need_x else None
        gU_parts = [None] * len(self.chunks)

        def chunk(k, n0, n1):
            T = (n1 - n0) * self.th * self.tw
            gyt_buf = WORKSPACE.take(xp, 4 * OC * T, dt)
            gyt = self.gradient_blocks(xp, k, gyt_buf[:4 * OC * T].reshape(
                2, 2, self.th, self.tw, n1 - n0, OC), g, scale, c1c0)
            gU_parts[k] = wino.backward_blocks(xp, x, n0, n1, gyt, need_x, need_W, gx)
            WORKSPACE.give(gyt_buf)

        if need_x or need_W:
            wino._each_chunk(chunk, nbytes=x.shape[0] * OC * 4 * self.th * self.tw *
                             wino.itemsize, like=x)
        gW = wino.weight_gradient(xp, gU_parts, dt) if need_W else None
        return gx, gW   # the kept blocks stay for another backward until release()

    def gradient_blocks(self, xp, k, out, g, scale, c1c0):
        """The convolution's gradient for chunk k in 2x2 blocks, written into out (2, 2, th,
        tw, n, OC): batch norm's affine map Y * c1 + c0 of the kept blocks (training; 0 in
        evaluation) plus scale * g routed to each window's winner."""
        OC = out.shape[-1]
        slabs = out.reshape(4, -1, OC)
        R, dt = slabs.shape[1], out.dtype
        if c1c0 is not None:
            xp.multiply(self.slot(k).reshape(4, R, OC), c1c0[0], out=slabs)
            slabs += c1c0[1]
        else:
            slabs[...] = 0
        gs = WORKSPACE.take(xp, (R, OC), dt)
        xp.multiply(self.quarter(g, k), scale, out=gs)
        route_to_winners(xp, gs, slabs, self.quarter(self.right_top, k),
                         self.quarter(self.right_bottom, k), self.quarter(self.bottom, k))
        WORKSPACE.give(gs)
        return out

    def release(self) -> None:
        WORKSPACE.give(self.Y)
        self.Y = self.pooled = self.right_top = self.right_bottom = self.bottom = None
        self.wino.release()
