"""conv2d kernel "per_image": one product per image, ``y[i] = W2 @ col[i]`` and ``gW = sum_i
gy[i] @ col[i]^T``, split over host threads, for convolutions so small (a grayscale network's
first layer) that their products are memory-bound: per image they need no layout copy
(docs/design/conv.md).  Exact windows; chunks of CONV_PER_IMAGE_CHUNK_BYTES of columns, one
after the other (the threads split each chunk's images).  Protocol: see
:mod:`minidl.kernels.host.conv_columns`."""
from __future__ import annotations

from minidl.kernels.host.conv_columns import ColumnsConv
from minidl.kernels.host.conv_common import WORKSPACE, per_image_verdict, plan_columns
from minidl.kernels.registry import register
from minidl.parallel import parallel_for

__all__ = ["PerImageConv"]


@register("conv2d", "per_image", backends=("numpy",), applies=per_image_verdict, priority=40,
          summary="one small product per image, split over host threads (memory-bound)")
class PerImageConv(ColumnsConv):
    """One conv2d call with one product per image (see the module docstring)."""

    @staticmethod
    def make_plan(g):
        return plan_columns(g, per_image=True)

    def _forward_chunks(self, xp, windows, W2, bias, y, keep):
        for n0, n1 in self.layout.chunks():
            col, scratch = self._chunk_columns(xp, windows, n0, n1, keep, y.dtype)
            self._forward_images(xp, W2[0], col, bias, y[n0:n1])
            WORKSPACE.give(scratch)

    @staticmethod
    def _forward_images(xp, W2, col, bias, y):
        """y (n, OC, OH, OW) = W2 (OC, K) @ col[i] (K, OH*OW) for each image, plus the bias."""
        OC = W2.shape[0]
        y3 = y.reshape(y.shape[0], OC, -1)

        def images(lo, hi):
            xp.matmul(W2, col[lo:hi], out=y3[lo:hi])
            if bias is not None:
                y3[lo:hi] += bias.reshape(OC, 1)

        parallel_for(y.shape[0], images, nbytes=y.nbytes, like=y)

    def _backward_chunks(self, xp, gy, windows, W2t, need_x, need_W, need_b, gx):
        """(gW, gb) as asked, and gx (when given) filled, with one product per image."""
        g, nb, take = self.g, self.plan.images_per_chunk, WORKSPACE.take
        C, OC, KH, KW = g.C, g.OC, g.KH, g.KW
        size = C * KH * KW * nb * g.OH * self.plan.ow_cols
        scratch = take(xp, size, gy.dtype) if need_W and self.cols is None else None
        gcol_buf = take(xp, size, gy.dtype) if need_x else None
        gpad_buf = take(xp, self.layout.gpad_size(nb), gy.dtype) if need_x else None
        gW = xp.zeros((1, OC, C * KH * KW), dtype=gy.dtype) if need_W else None
        gb = xp.zeros(OC, dtype=gy.dtype) if need_b else None
        for n0, n1 in self.layout.chunks():
            col = None
            if need_W:
                col = (self.layout.im2col(xp, windows, n0, n1, scratch)
                       if self.cols is None else self.layout.kept_col(self.cols, n0, n1))
            sums = self._backward_images(xp, gy[n0:n1], col, W2t[0], need_b, gcol_buf,
                                         gpad_buf, gx[n0:n1] if need_x else None)
            if need_W:
                gW[0] += sums[0]
            if need_b:
                gb += sums[-1]
        WORKSPACE.give(scratch, gcol_buf, gpad_buf)
        return gW, gb

    def _backward_images(self, xp, gy, col, W2t, need_b, gcol_buf, gpad_buf, gx):
        """For the images of gy (n, OC, OH, OW): (gW, gb) sums as asked (col None: no gW),
        and gx (n, C, H, W) through col2im when given.  The sums are taken image by image and
        added over the images at the end, so they don't depend on the number of threads."""
        n, OC = gy.shape[:2]
        g3 = gy.reshape(n, OC, -1)
        K = W2t.shape[0]
        per_W = xp.empty((n, OC, K), dtype=gy.dtype) if col is not None else None
        per_b = xp.empty((n, OC), dtype=gy.dtype) if need_b else None

        def images(lo, hi):
            if per_W is not None:
                xp.matmul(g3[lo:hi], col[lo:hi].transpose(0, 2, 1), out=per_W[lo:hi])
            if per_b is not None:
                g3[lo:hi].sum(axis=2, out=per_b[lo:hi])

        parallel_for(n, images, nbytes=gy.nbytes, like=gy)
        totals = [p.sum(axis=0) for p in (per_W, per_b) if p is not None]
        if gx is not None:
            gcol = gcol_buf[:n * K * g3.shape[2]].reshape(n, K, g3.shape[2])
            parallel_for(n, lambda lo, hi: xp.matmul(W2t, g3[lo:hi], out=gcol[lo:hi]),
                         nbytes=gcol.nbytes, like=gcol)
            g = self.g
            # (n, C, KH, KW, OH, OW) seen as col2im's (C, KH, KW, n, OH, OW): a view
            gcol6 = gcol.reshape(n, g.C, g.KH, g.KW, g.OH, g.OW).transpose(1, 2, 3, 0, 4, 5)
            self.layout.col2im(xp, gcol6, n, gpad_buf, gx)
        return totals
