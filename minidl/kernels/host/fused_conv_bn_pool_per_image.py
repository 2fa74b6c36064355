"""The fused conv -> batch norm -> (ReLU) -> 2x2 max pool op's kernel for layers so small that
conv2d takes one product per image (a grayscale network's first conv, 1 -> 32 channels); array
code (the op and its batch norm map are :mod:`minidl.functions.conv_bn_pool`).

im2col puts the output positions in pooling-window order -- (a, b, i, j) for output (2i + a,
2j + b) -- so each image's product W (OC, C*9) @ col (C*9, 4*R) comes out as (OC, 4, R), the
four places of every window as four runs of R = OH/2 * OW/2 per channel, and the pooled
quarter (OC, R) is the output's NCHW image as it stands.  Blocks of images of about
FUSED_IMAGE_BLOCK_BYTES run in parallel, each in cache from its product to its window maxima
(forward) and from batch norm's gradient to its weight gradient product (backward).
"""
from __future__ import annotations

from minidl.kernels import tuning
from minidl.kernels.geometry import ConvGeometry
from minidl.kernels.host.conv_common import WORKSPACE, ColumnPlan, per_image_verdict
from minidl.kernels.host.conv_layout import ColumnLayout
from minidl.kernels.host.fused_conv_bn_pool_common import moments, pool_windows, route_to_winners
from minidl.kernels.registry import register
from minidl.parallel import even_chunk_size, parallel_for, sum_in_order

__all__ = ["ImageBlocksPool"]


@register("conv2d_batch_norm_max_pool2d", "per_image", backends=("numpy",),
          applies=per_image_verdict, priority=30,
          summary="per-image products, statistics and window maxima in image blocks")
class ImageBlocksPool:
    """One call's per-image products, statistics and window maxima.  ``keep_for_W``: keep the
    column matrices for gW; ``recorded``: a backward may come (else the padded input goes back
    at once)."""

    def __init__(self, xp, x, W, padding, backend, keep_for_W, recorded, training):
        N, C, H, Wd = x.shape
        OC, dt = W.shape[0], x.dtype
        ph, pw = padding
        OH, OW = H + 2 * ph - 2, Wd + 2 * pw - 2
        self.th, self.tw = OH // 2, OW // 2
        R, K = self.th * self.tw, C * 9
        self.keep_for_W, self.recorded, self.training = keep_for_W, recorded, training
        g = ConvGeometry(N, C, H, Wd, OC, 3, 3, (1, 1), tuple(padding), (1, 1), 1, dt, backend)
        self.layout = ColumnLayout(ColumnPlan(g, False, OW, N, per_image=True), WORKSPACE)
        per_block = even_chunk_size(
            N, max(1, tuning.FUSED_IMAGE_BLOCK_BYTES // (OC * 4 * R * dt.itemsize)))
        self.blocks = [(b0, min(N, b0 + per_block)) for b0 in range(0, N, per_block)]
        self.buf = self.windows = None
        self.cols = WORKSPACE.take(xp, (N, K, 4 * R), dt) if keep_for_W else None
        self.Y = WORKSPACE.take(xp, (N, OC, 4 * R), dt)
        self.pooled = xp.empty((N, OC, R), dtype=dt)
        self.right_top, self.right_bottom, self.bottom = (
            xp.empty((N, OC, R), dtype=bool) for _ in range(3))

    def forward(self, xp, x, W, flip):
        """Per block of images: the products (kept in Y), their (count, mean, centred sum of
        squares) per channel when training (returned, one per block), and the window maxima
        (minima where ``flip`` (OC, 1) is -1) into :attr:`pooled` (N, OC, R) with their
        winners."""
        N, C = x.shape[:2]
        OC = W.shape[0]
        self.buf = self.layout.padded(xp, x)
        # (N, K, 4R) per image, the output positions in window order
        self.windows = self.layout.windows(xp, self.buf).reshape(
            C * 9, N, self.th, 2, self.tw, 2).transpose(1, 0, 3, 5, 2, 4)
        W2 = W.reshape(OC, C * 9)
        parts = [None] * len(self.blocks)

        def block(k):
            b0, b1 = self.blocks[k]
            col, scratch = self._col(xp, b0, b1, forward=True)
            Y3 = self.Y[b0:b1]
            xp.matmul(W2, col, out=Y3)
            WORKSPACE.give(scratch)
            if self.training:
                parts[k] = moments(xp, Y3, channel_axis=1)
            pool_windows(xp, self._slabs(Y3), flip, self.pooled[b0:b1], self.right_top[b0:b1],
                         self.right_bottom[b0:b1], self.bottom[b0:b1])

        self._each_block(block, nbytes=self.Y.nbytes, like=x)
        if self.cols is not None or not self.recorded:
            WORKSPACE.give(self.buf)
            self.buf = self.windows = None
        return parts

    def _col(self, xp, b0, b1, forward):
        """(col (n, K, 4R) of images b0:b1, a scratch buffer to give back or None): in
        forward, the kept column matrices' slot filled, or a scratch copy; in backward, the
        slot kept from forward, or a scratch copy made again from the padded input."""
        if self.cols is not None and not forward:
            return self.cols[b0:b1], None
        shape = (b1 - b0, self.windows.shape[1], self.Y.shape[2])
        scratch = None if self.cols is not None else WORKSPACE.take(xp, shape, self.Y.dtype)
        col = self.cols[b0:b1] if self.cols is not None else scratch
        xp.copyto(col.reshape(self.windows[b0:b1].shape), self.windows[b0:b1])
        return col, scratch

    @staticmethod
    def _slabs(Y3):
        """(n, OC, 4R) -> the four places of every window, (4, n, OC, R) (a view)."""
        n, OC, R4 = Y3.shape
        return Y3.reshape(n, OC, 4, R4 // 4).transpose(2, 0, 1, 3)

    def _each_block(self, work, nbytes, like):
        parallel_for(len(self.blocks), lambda lo, hi: [work(k) for k in range(lo, hi)],
                     nbytes=nbytes, like=like)

    def backward(self, xp, x_shape, W, g, scale, c1c0, need_x, need_W):
        """(gx, gW) from the pooled gradient ``g`` (N, OC, R), batch norm's ``scale`` (OC,)
        and, in training, its affine map ``c1c0`` ((OC, 1) each) of the conv's output (None in
        evaluation)."""
        OC, dt = W.shape[0], g.dtype
        R = self.th * self.tw
        W2t = W.reshape(OC, -1).T
        gx = xp.empty(x_shape, dtype=dt) if need_x else None
        gW_parts = [None] * len(self.blocks)

        def block(k):
            b0, b1 = self.blocks[k]
            n = b1 - b0
            gyt = WORKSPACE.take(xp, (n, OC, 4 * R), dt)   # the conv's gradient
            if c1c0 is not None:
                xp.multiply(self.Y[b0:b1], c1c0[0], out=gyt)
                gyt += c1c0[1]
            else:
                gyt.fill(0)
            routed = WORKSPACE.take(xp, (n, OC, R), dt)
            xp.multiply(g[b0:b1], scale[:, None], out=routed)
            route_to_winners(xp, routed, self._slabs(gyt), self.right_top[b0:b1],
                             self.right_bottom[b0:b1], self.bottom[b0:b1])
            WORKSPACE.give(routed)
            if need_W:
                col, scratch = self._col(xp, b0, b1, forward=False)
                gW_parts[k] = xp.matmul(gyt, col.transpose(0, 2, 1)).sum(axis=0)
                WORKSPACE.give(scratch)
            if need_x:
                self._input_gradient(xp, W2t, gyt, gx[b0:b1])
            WORKSPACE.give(gyt)

        self._each_block(block, nbytes=self.Y.nbytes, like=g)
        gW = sum_in_order(gW_parts).reshape(W.shape) if need_W else None
        return gx, gW

    def _input_gradient(self, xp, W2t, gyt, gx):
        """gx (n, C, H, W) from the conv's gradient gyt (n, OC, 4R) in window order: the column
        gradients W^T @ gyt put back in (OH, OW) order, then col2im."""
        n, K = gyt.shape[0], W2t.shape[0]
        g = self.layout.g
        C, KH, KW, OH, OW = g.C, g.KH, g.KW, g.OH, g.OW
        th, tw = OH // 2, OW // 2
        gcol = WORKSPACE.take(xp, (n, K, 4 * th * tw), gyt.dtype)
        xp.matmul(W2t, gyt, out=gcol)
        ordered = WORKSPACE.take(xp, (n, K, th, 2, tw, 2), gyt.dtype)
        xp.copyto(ordered, gcol.reshape(n, K, 2, 2, th, tw).transpose(0, 1, 4, 2, 5, 3))
        gpad = WORKSPACE.take(xp, self.layout.gpad_size(n), gyt.dtype)
        # (n, C, KH, KW, OH, OW) seen as col2im's (C, KH, KW, n, OH, OW): a view
        self.layout.col2im(xp, ordered.reshape(n, C, KH, KW, OH, OW).transpose(1, 2, 3, 0, 4, 5),
                           n, gpad, gx)
        WORKSPACE.give(gcol, ordered, gpad)

    def release(self) -> None:
        WORKSPACE.give(self.Y, self.cols, self.buf)
        self.Y = self.cols = self.buf = self.windows = self.pooled = None
        self.right_top = self.right_bottom = self.bottom = None
