"""The data movement of a column-matrix convolution: the padded input, its strided window
view, the column matrix (im2col) and the sum of column gradients back onto the input
(col2im), for wide rows, exact windows and one product per image.  The kernels
(:mod:`minidl.kernels.host.conv_columns`, ``conv_per_image``) run the products around it.

    x (N, C, H, W)  ->  padded buffer  ->  windows (C, KH, KW, N, OH, OW') view  ->  col

``col`` has shape (groups, C/groups*KH*KW, n*OH*OW') for a chunk of n images (per image: (n,
C*KH*KW, OH*OW)), rows ordered (c, kh, kw) like W's columns.  The copies run over host threads
(:mod:`minidl.parallel`) on a multi-core CPU.
"""
from __future__ import annotations

from minidl.kernels.host.conv_common import ColumnPlan
from minidl.kernels.host.conv_phased import phased_col2im, tap_span
from minidl.parallel import parallel_for

__all__ = ["ColumnLayout"]


class ColumnLayout:
    """The buffers and copies of one conv2d call laid out by ``plan`` (a
    :class:`~minidl.kernels.host.conv_common.ColumnPlan`); scratch buffers come from
    ``workspace``."""

    def __init__(self, plan: ColumnPlan, workspace):
        self.plan, self.g, self.workspace = plan, plan.g, workspace
        g = plan.g
        # strided exact windows (batch products): col2im adds into the stride's phases of x
        self.phase_hw = (-(-g.H // g.stride[0]), -(-g.W // g.stride[1]))

    def source(self, xp, x):
        """(padded buffer, windows): what im2col copies from (the buffer goes back to the
        workspace when no longer needed)."""
        buf = self.padded(xp, x)
        return buf, self.windows(xp, buf)

    def gpad_size(self, n) -> int:
        """Elements of the col2im scratch buffer for n images."""
        g = self.g
        if self.plan.phased:
            (sh, sw), (Hq, Wq) = g.stride, self.phase_hw
            return n * g.C * sh * sw * Hq * Wq
        return n * g.C * (g.Hp * g.Wp + (g.KW - 1) * g.dilation[1])

    def padded(self, xp, x):
        """x zero-padded, in a flat buffer with slack after the last plane so that the wide
        windows stay inside it (they only feed discarded output columns)."""
        g = self.g
        N, C, H, Wd, Hp, Wp = g.N, g.C, g.H, g.W, g.Hp, g.Wp
        (ph, pw), dw = g.padding, g.dilation[1]
        slack = dw * (g.KW - 1) if self.plan.wide else 0
        buf = self.workspace.take(xp, N * C * Hp * Wp + slack, x.dtype)
        padded = buf[:N * C * Hp * Wp].reshape(N, C, Hp, Wp)
        border = ph or pw or slack  # the border and the slack are zero, the inside is x
        if slack:
            buf[N * C * Hp * Wp:].fill(0)

        def images(lo, hi):
            if border:
                padded[lo:hi].fill(0)
            xp.copyto(padded[lo:hi, :, ph:ph + H, pw:pw + Wd], x[lo:hi])

        parallel_for(N, images, nbytes=x.nbytes, like=x)
        return buf

    def windows(self, xp, buf):
        """Read-only strided view of the padded input, (C, KH, KW, N, OH*Wp) when wide, else
        (C, KH, KW, N, OH, OW): element [c, i, j, n, ...] is the input under kernel tap
        (i, j) of channel c for every output position of image n.  Never written through."""
        g = self.g
        C, KH, KW, N, OH, OW, Wp = g.C, g.KH, g.KW, g.N, g.OH, g.OW, g.Wp
        (sh, sw), (dh, dw) = g.stride, g.dilation
        it, plane = buf.dtype.itemsize, g.Hp * Wp
        as_strided = xp.lib.stride_tricks.as_strided
        if self.plan.wide:
            return as_strided(buf, shape=(C, KH, KW, N, OH * Wp),
                              strides=(plane * it, dh * Wp * it, dw * it, C * plane * it, it))
        return as_strided(buf, shape=(C, KH, KW, N, OH, OW),
                          strides=(plane * it, dh * Wp * it, dw * it, C * plane * it,
                                   sh * Wp * it, sw * it))

    def products(self, buf, rows, n):
        """A chunk's product (``rows``, n*OH*OW') in the flat ``buf`` as (n, rows, OH, OW): a
        view for the copies to and from NCHW (the wide columns left out)."""
        OH, OW, ow_cols = self.g.OH, self.g.OW, self.plan.ow_cols
        return buf[:rows * n * OH * ow_cols].reshape(rows, n, OH, ow_cols)[
            :, :, :, :OW].transpose(1, 0, 2, 3)

    def chunks(self):
        return self.plan.chunks()

    def im2col(self, xp, windows, n0, n1, scratch):
        """The column matrix of images n0:n1, (G, C/G*KH*KW, n*OH*OW'), or (n, C*KH*KW,
        OH*OW) when per image, copied into ``scratch`` (a flat buffer reused across chunks,
        so the copy stays in cache) from ``windows``."""
        g = self.g
        C, KH, KW, OH, OW = g.C, g.KH, g.KW, g.OH, g.OW
        part = windows[:, :, :, n0:n1]
        if self.plan.per_image:  # (n, C*KH*KW, OH*OW): image by image
            part = part.transpose(3, 0, 1, 2, 4, 5)
            col = scratch[:part.size].reshape(part.shape)
            parallel_for(n1 - n0, lambda lo, hi: xp.copyto(col[lo:hi], part[lo:hi]),
                         nbytes=col.nbytes, like=col)
            return col.reshape(n1 - n0, C * KH * KW, OH * OW)
        col = scratch[:part.size].reshape(part.shape)
        if C > 1:  # channels in parallel, or kernel rows when there is one channel
            parallel_for(C, lambda lo, hi: xp.copyto(col[lo:hi], part[lo:hi]),
                         nbytes=col.nbytes, like=col)
        else:
            parallel_for(KH, lambda lo, hi: xp.copyto(col[:, lo:hi], part[:, lo:hi]),
                         nbytes=col.nbytes, like=col)
        return col.reshape(g.groups, g.Cg * KH * KW, (n1 - n0) * OH * self.plan.ow_cols)

    def kept_col(self, cols, n0, n1):
        """Chunk n0:n1's slot in ``cols``, the column matrices kept for backward (one buffer
        for the whole batch, chunk after chunk), as :meth:`im2col` returns them."""
        g, per_image = self.g, self.plan.col_size
        slot = cols[n0 * per_image:n1 * per_image]
        if self.plan.per_image:
            return slot.reshape(n1 - n0, g.C * g.KH * g.KW, g.OH * g.OW)
        return slot.reshape(g.groups, g.Cg * g.KH * g.KW, (n1 - n0) * g.OH * self.plan.ow_cols)

    def col2im(self, xp, gcol, n, gpad_buf, out):
        """Sum the column gradients of n images back onto their input, into ``out`` (n, C, H,
        W): one slice-add per kernel tap (the slices of one tap never overlap, so ``+=`` is
        exact).  Channels in parallel on a multi-core CPU.

        Exact windows add each tap only where it meets the input (the padding's gradient is
        never formed), starting from a copy of a tap that covers all of it when there is one
        (a "same" stride-1 conv's centre tap) instead of zeros.  Wide rows add onto the padded
        plane and crop.  The sums are laid out (C, n, ...), the order of gcol's rows (channel,
        then image), so each add walks source and destination in the same order; per image
        gcol comes image by image, and so do the sums."""
        g, wide = self.g, self.plan.wide
        C, H, Wd, KH, KW, OH, OW, Hp, Wp = g.C, g.H, g.W, g.KH, g.KW, g.OH, g.OW, g.Hp, g.Wp
        (sh, sw), (ph, pw), (dh, dw) = g.stride, g.padding, g.dilation
        cn = not self.plan.per_image
        if wide:
            L, P = OH * Wp, Hp * Wp + dw * (KW - 1)
            gcol = gcol.reshape(C, KH, KW, n, L)
        else:
            P = H * Wd
            gcol = gcol.reshape(C, KH, KW, n, OH, OW)
            rows = [tap_span(OH, sh, i * dh - ph, H) for i in range(KH)]
            cols = [tap_span(OW, sw, j * dw - pw, Wd) for j in range(KW)]
            taps = [(i, j) for i in range(KH) for j in range(KW)
                    if rows[i][1] > rows[i][0] and cols[j][1] > cols[j][0]]
            cover = [(i, j) for i, j in taps if sh == sw == 1 and rows[i][1] - rows[i][0] == H
                     and cols[j][1] - cols[j][0] == Wd]
            if cover:  # first, as a copy
                taps.remove(cover[0])
                taps.insert(0, cover[0])
        if self.plan.phased:
            return phased_col2im(xp, g, self.phase_hw, gcol, n, gpad_buf, out, rows, cols,
                                 taps)
        acc = gpad_buf[:n * C * P].reshape((C, n, P) if cn else (n, C, P))

        def channels(lo, hi):
            a = acc[lo:hi] if cn else acc[:, lo:hi]
            if wide:
                a.fill(0)
                for i in range(KH):
                    for j in range(KW):
                        src = gcol[lo:hi, i, j] if cn else gcol[lo:hi, i, j].swapaxes(0, 1)
                        off = i * dh * Wp + j * dw
                        a[:, :, off:off + L] += src
                plane = a[:, :, :Hp * Wp].reshape(a.shape[:2] + (Hp, Wp))
                plane = plane[:, :, ph:ph + H, pw:pw + Wd]
            else:
                plane = a.reshape(a.shape[:2] + (H, Wd))
                if not cover:
                    plane.fill(0)
                for k, (i, j) in enumerate(taps):
                    (o0, o1, h0), (q0, q1, w0) = rows[i], cols[j]
                    src = gcol[lo:hi, i, j, :, o0:o1, q0:q1]
                    src = src if cn else src.swapaxes(0, 1)
                    dst = plane[:, :, h0:h0 + sh * (o1 - o0 - 1) + 1:sh,
                                w0:w0 + sw * (q1 - q0 - 1) + 1:sw]
                    if k == 0 and cover:
                        xp.copyto(dst, src)
                    else:
                        dst += src
            xp.copyto(out[:, lo:hi], plane.transpose(1, 0, 2, 3) if cn else plane)

        parallel_for(C, channels, nbytes=gcol.nbytes, like=gcol)
