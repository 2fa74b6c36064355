"""conv2d kernel "columns": im2col -> one product per chunk of images -> col2im, with the
batch in cache-sized chunks on the host (whole chunks per thread, BLAS on one thread each)
and the whole batch at once on a GPU.  Wide rows for stride 1 where they waste little, exact
windows otherwise, phased col2im for strided ones (:mod:`minidl.kernels.host.conv_layout`).

Kernel protocol of conv2d (every kernel of the op): ``impl(geometry, keep_col, recorded)``
makes the runner of one call; ``forward(xp, x, W, b) -> y``, then at most one
``backward(xp, gy, x, W, need_x, need_W, need_b) -> (gx, gW, gb)`` (None where not asked; new
arrays each call), and ``release()`` gives the kept buffers back.  ``keep_col``: W needs a
gradient, keep the column matrix (up to CONV_KEEP_COL_BYTES) for backward; ``recorded``: a
backward may come (else workspace buffers go back at once).
"""
from __future__ import annotations

from minidl.kernels import tuning
from minidl.kernels.host.conv_common import WORKSPACE, copy_add, plan_columns
from minidl.kernels.host.conv_layout import ColumnLayout
from minidl.kernels.registry import register
from minidl.parallel import chunks_side_by_side, parallel_for, sum_in_order

__all__ = ["ColumnsConv"]


class ColumnsConv:
    """One conv2d call through column matrices in chunks (see the module docstring)."""

    def __init__(self, g, keep_col=False, recorded=True):
        self.g, self.keep_col, self.recorded = g, keep_col, recorded
        self.plan = self.make_plan(g)
        self.layout = self.make_layout()
        self.cols = self.buf = None

    @staticmethod
    def make_plan(g):
        return plan_columns(g)

    def make_layout(self):
        return ColumnLayout(self.plan, WORKSPACE)

    def forward(self, xp, x, W, b=None):
        """y (N, OC, OH, OW) = conv2d(x, W, b)."""
        g = self.g
        buf, windows = self.layout.source(xp, x)
        W2 = W.reshape(g.groups, g.OC // g.groups, g.Cg * g.KH * g.KW)
        y = xp.empty((g.N, g.OC, g.OH, g.OW), dtype=x.dtype)
        bias = None if b is None else b.reshape(1, g.OC, 1, 1)
        col_size = self.plan.col_size
        keep = (self.keep_col
                and g.N * col_size * x.dtype.itemsize <= tuning.CONV_KEEP_COL_BYTES)
        self.cols = WORKSPACE.take(xp, g.N * col_size, x.dtype) if keep else None
        self._forward_chunks(xp, windows, W2, bias, y, keep)
        if keep or not self.recorded:  # backward needs the input only to redo im2col
            WORKSPACE.give(buf)
            buf = None
        self.buf = buf
        return y

    def _chunk_columns(self, xp, windows, n0, n1, keep, dtype):
        """(col of images n0:n1, its scratch buffer or None): into the kept columns' slot
        when they are kept, else into a scratch buffer."""
        scratch = None if keep else WORKSPACE.take(xp, (n1 - n0) * self.plan.col_size, dtype)
        slot = scratch if scratch is not None else self.layout.kept_col(self.cols, n0, n1)
        return self.layout.im2col(xp, windows, n0, n1, slot), scratch

    def _forward_chunks(self, xp, windows, W2, bias, y, keep):
        """y2 = W2 @ col per chunk, side by side, each to NCHW with the bias added."""
        g, ow_cols = self.g, self.plan.ow_cols
        OC, OH, G = g.OC, g.OH, g.groups
        chunks = self.layout.chunks()

        def chunk(k):
            n0, n1 = chunks[k]
            n = n1 - n0
            col, scratch = self._chunk_columns(xp, windows, n0, n1, keep, y.dtype)
            y_buf = WORKSPACE.take(xp, OC * n * OH * ow_cols, y.dtype)
            xp.matmul(W2, col, out=y_buf.reshape(G, OC // G, n * OH * ow_cols))
            y2 = self.layout.products(y_buf, OC, n)  # (n, OC, OH, OW) view
            # to NCHW, adding the bias on the way (no second pass over y)
            parallel_for(n, lambda lo, hi: copy_add(xp, y[n0 + lo:n0 + hi], y2[lo:hi], bias),
                         nbytes=y_buf.nbytes, like=y_buf)
            WORKSPACE.give(scratch, y_buf)

        chunks_side_by_side(len(chunks), chunk, nbytes=y.nbytes, like=y)

    def redo_source(self, xp, x):
        """What backward's im2col copies from when forward's columns were not kept."""
        return self.layout.windows(xp, self.buf)

    def backward(self, xp, gy, x, W, need_x, need_W, need_b):
        """(gx, gW, gb) for gy (N, OC, OH, OW), None where not asked."""
        g = self.g
        gx = gW = gb = None
        if need_x or need_W:
            windows = None
            if need_W and self.cols is None:
                windows = self.redo_source(xp, x)
            W2 = W.reshape(g.groups, g.OC // g.groups, g.Cg * g.KH * g.KW)
            W2t = W2.transpose(0, 2, 1)
            if need_x:
                gx = xp.empty((g.N, g.C, g.H, g.W), dtype=gy.dtype)
            gW, gb = self._backward_chunks(xp, gy, windows, W2t, need_x, need_W, need_b, gx)
            gW = None if gW is None else gW.reshape(W.shape)
        elif need_b:
            gb = gy.sum(axis=(0, 2, 3))
        return gx, gW, gb

    def _backward_chunks(self, xp, gy, windows, W2t, need_x, need_W, need_b, gx):
        """(gW, gb) as asked, and gx (when given) filled, chunk by chunk: gy's chunk as
        (OC, n, OH, OW'), gW += gy2 @ col^T, gcol = W^T @ gy2 and col2im.  The chunks run side
        by side on a multi-core CPU; their sums are added in chunk order afterwards."""
        g, ow_cols = self.g, self.plan.ow_cols
        C, OC, OH, OW, KH, KW, G = g.C, g.OC, g.OH, g.OW, g.KH, g.KW, g.groups
        dt, take = gy.dtype, WORKSPACE.take
        chunks = self.layout.chunks()
        gW_parts, gb_parts = [None] * len(chunks), [None] * len(chunks)

        def chunk(k):
            n0, n1 = chunks[k]
            n, size = n1 - n0, (n1 - n0) * OH * ow_cols
            # gy of the chunk as (OC, n, OH, OW'), zero in the discarded wide columns
            gy_buf = take(xp, OC * size, dt)
            if ow_cols > OW:
                gy_buf.reshape(OC, n, OH, ow_cols)[:, :, :, OW:] = 0
            gy_view = self.layout.products(gy_buf, OC, n)  # (n, OC, OH, OW) view
            parallel_for(n, lambda lo, hi: xp.copyto(gy_view[lo:hi], gy[n0 + lo:n0 + hi]),
                         nbytes=gy_buf.nbytes, like=gy_buf)
            gy2 = gy_buf.reshape(G, OC // G, size)
            if need_b:  # from the chunk while it is in cache (wide columns are 0)
                gb_parts[k] = gy2.reshape(OC, -1).sum(axis=1)
            col_buf = None
            if need_W:
                if self.cols is None:
                    col_buf = take(xp, C * KH * KW * size, dt)
                    col = self.layout.im2col(xp, windows, n0, n1, col_buf)
                else:
                    col = self.layout.kept_col(self.cols, n0, n1)
                gW_parts[k] = xp.matmul(gy2, col.transpose(0, 2, 1))
            if need_x:
                gcol_buf = take(xp, C * KH * KW * size, dt)
                gpad_buf = take(xp, self.layout.gpad_size(n), dt)
                gcol = xp.matmul(W2t, gy2, out=gcol_buf.reshape(G, g.Cg * KH * KW, size))
                self.layout.col2im(xp, gcol, n, gpad_buf, gx[n0:n1])
                WORKSPACE.give(gcol_buf, gpad_buf)
            WORKSPACE.give(gy_buf, col_buf)

        chunks_side_by_side(len(chunks), chunk, nbytes=gy.nbytes, like=gy)
        return sum_in_order(gW_parts) if need_W else None, \
            sum_in_order(gb_parts) if need_b else None

    def release(self) -> None:
        WORKSPACE.give(self.cols, self.buf)
        self.cols = self.buf = None


def _always(g):
    if g.backend == "numpy":
        return True, "im2col in chunks of about CONV_CHUNK_BYTES of column matrix"
    return True, "im2col with the whole batch as one chunk"


# the host's fallback, and what CuPy runs: the whole batch as one chunk off the host
register("conv2d", "columns", backends=("numpy", "strict", "cupy"), applies=_always,
         priority=10, summary="im2col + one GEMM per chunk: wide rows, exact windows or "
                                      "phased col2im")(ColumnsConv)
