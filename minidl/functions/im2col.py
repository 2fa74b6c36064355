"""The data movement of a convolution as matrix products: the padded input, its strided
window view, the column matrix (im2col) and the sum of column gradients back onto the input
(col2im).  :mod:`minidl.functions.conv` decides the layout (wide or exact rows, one product per
image or per chunk, the chunk size) and runs the products; :class:`ColumnLayout` moves the data.

    x (N, C, H, W)  ->  padded buffer  ->  windows (C, KH, KW, N, OH, OW') view  ->  col

``col`` has shape (C*KH*KW, n*OH*OW') for a chunk of n images (per image: (n, C*KH*KW,
OH*OW)), rows ordered (c, kh, kw) like W's columns.  OW' is the padded width Wp for "wide" rows
(stride 1: each (c, kh, kw, n) window is one contiguous run) and OW otherwise.  With phase
runs (a strided convolution whose output is the input / stride, on the host) the columns are
copied from x's stride phases instead of the padded input's windows (``_phase_im2col``).  The
copies run over host threads (:mod:`minidl.parallel`) on a multi-core CPU.
"""
from __future__ import annotations

from minidl.parallel import parallel_for

__all__ = ["ColumnLayout"]


class ColumnLayout:
    """The buffers and copies of one conv2d call.

    ``geom`` is (N, C, H, W, OC, C/groups, KH, KW, OH, OW, Hp, Wp, OW', wide, images per
    chunk).  The column matrices are (groups, C/groups*KH*KW, n*OH*OW') per chunk of n images,
    or (n, C*KH*KW, OH*OW) when ``per_image``.  Scratch buffers come from ``workspace``.
    """

    def __init__(self, geom, stride, padding, dilation, groups, per_image, workspace,
                 runs=False):
        self.geom, self.stride, self.padding, self.dilation = geom, stride, padding, dilation
        self.groups, self.per_image, self.workspace = groups, per_image, workspace
        N, C, H, Wd = geom[:4]
        # strided exact windows (batch products): col2im adds into the stride's phases of x
        self.phased = not geom[13] and not per_image and stride != (1, 1)
        self.phase_hw = (-(-H // stride[0]), -(-Wd // stride[1]))
        # phase runs (see runs_fit): the columns are copied from x's phases in long runs
        self.runs = bool(runs)
        if self.runs:
            if not (self.phased and runs_fit(geom[2:4], geom[8:10], stride)):
                raise ValueError(f"ColumnLayout: phase runs need a strided exact layout whose "
                                 f"output is the input / stride, got geometry {geom[:14]} "
                                 f"and stride {stride}")
            rows = [_phase_tap(i * dilation[0] - padding[0], stride[0], geom[8])
                    for i in range(geom[6])]
            cols = [_phase_tap(j * dilation[1] - padding[1], stride[1], geom[9])
                    for j in range(geom[7])]
            # phase (r, s) -> its taps (partial, i, j, di, dj, rows, cols), a covering one
            # first (not shifted, inside everywhere: its columns are the phase itself); taps
            # that only ever meet padding are all zero
            self.phase_taps, self.zero_taps = {}, []
            for i, (r, di, rspan) in enumerate(rows):
                for j, (s, dj, cspan) in enumerate(cols):
                    if rspan[1] <= rspan[0] or cspan[1] <= cspan[0]:
                        self.zero_taps.append((i, j))
                        continue
                    partial = not (di == dj == 0 and rspan == (0, geom[8])
                                   and cspan == (0, geom[9]))
                    self.phase_taps.setdefault((r, s), []).append(
                        (partial, i, j, di, dj, rspan, cspan))
            for taps in self.phase_taps.values():
                taps.sort()

    def gpad_size(self, n) -> int:
        """Elements of the col2im scratch buffer for n images."""
        N, C, H, Wd, OC, Cg, KH, KW, OH, OW, Hp, Wp = self.geom[:12]
        if self.phased:
            (sh, sw), (Hq, Wq) = self.stride, self.phase_hw
            return n * C * sh * sw * Hq * Wq
        return n * C * (Hp * Wp + (KW - 1) * self.dilation[1])

    def padded(self, xp, x):
        """x zero-padded, in a flat buffer with slack after the last plane so that the wide
        windows stay inside it (they only feed discarded output columns)."""
        N, C, H, Wd, OC, Cg, KH, KW, OH, OW, Hp, Wp, ow_cols, wide, nb = self.geom
        (ph, pw), dw = self.padding, self.dilation[1]
        slack = dw * (KW - 1) if wide else 0
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
        N, C, H, Wd, OC, Cg, KH, KW, OH, OW, Hp, Wp, ow_cols, wide, nb = self.geom
        (sh, sw), (dh, dw) = self.stride, self.dilation
        it, plane = buf.dtype.itemsize, Hp * Wp
        as_strided = xp.lib.stride_tricks.as_strided
        if wide:
            return as_strided(buf, shape=(C, KH, KW, N, OH * Wp),
                              strides=(plane * it, dh * Wp * it, dw * it, C * plane * it, it))
        return as_strided(buf, shape=(C, KH, KW, N, OH, OW),
                          strides=(plane * it, dh * Wp * it, dw * it, C * plane * it,
                                   sh * Wp * it, sw * it))

    def products(self, buf, rows, n):
        """A chunk's product (``rows``, n*OH*OW') in the flat ``buf`` as (n, rows, OH, OW): a
        view for the copies to and from NCHW (the wide columns left out)."""
        OH, OW, ow_cols = self.geom[8], self.geom[9], self.geom[12]
        return buf[:rows * n * OH * ow_cols].reshape(rows, n, OH, ow_cols)[
            :, :, :, :OW].transpose(1, 0, 2, 3)

    def chunks(self):
        N, nb = self.geom[0], self.geom[-1]
        return [(n0, min(N, n0 + nb)) for n0 in range(0, N, nb)]

    def im2col(self, xp, windows, n0, n1, scratch):
        """The column matrix of images n0:n1, (G, C/G*KH*KW, n*OH*OW'), or (n, C*KH*KW,
        OH*OW) when ``per_image``, copied into ``scratch`` (a flat buffer reused across chunks,
        so the copy stays in cache) from ``windows`` -- x itself with phase runs."""
        N, C, H, Wd, OC, Cg, KH, KW, OH, OW, Hp, Wp, ow_cols, wide, nb = self.geom
        if self.runs:
            return self._phase_im2col(xp, windows, n0, n1, scratch)
        part = windows[:, :, :, n0:n1]
        if self.per_image:  # (n, C*KH*KW, OH*OW): image by image
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
        return col.reshape(self.groups, Cg * KH * KW, (n1 - n0) * OH * ow_cols)

    def kept_col(self, cols, n0, n1):
        """Chunk n0:n1's slot in ``cols``, the column matrices kept for backward (one buffer
        for the whole batch, chunk after chunk), as :meth:`im2col` returns them."""
        N, C, H, Wd, OC, Cg, KH, KW, OH, OW, Hp, Wp, ow_cols, wide, nb = self.geom
        per_image = C * KH * KW * OH * ow_cols
        slot = cols[n0 * per_image:n1 * per_image]
        if self.per_image:
            return slot.reshape(n1 - n0, C * KH * KW, OH * OW)
        return slot.reshape(self.groups, Cg * KH * KW, (n1 - n0) * OH * ow_cols)

    # -- forward and backward ----------------------------------------------------------------

    def col2im(self, xp, gcol, n, gpad_buf, out):
        """Sum the column gradients of n images back onto their input, into ``out`` (n, C, H,
        W): one slice-add per kernel tap (the slices of one tap never overlap, so ``+=`` is
        exact).  Channels in parallel on a multi-core CPU.

        Exact windows add each tap only where it meets the input (the padding's gradient is
        never formed), starting from a copy of a tap that covers all of it when there is one
        (a "same" stride-1 conv's centre tap) instead of zeros.  Wide rows add onto the padded
        plane and crop.  The sums are laid out (C, n, ...), the order of gcol's rows (channel,
        then image), so each add walks source and destination in the same order (MNIST CNN's
        32->64 conv at 14x14, 2-core CPU: backward 13.2 -> 12.3 ms); per image gcol comes
        image by image, and so do the sums."""
        N, C, H, Wd, OC, Cg, KH, KW, OH, OW, Hp, Wp, ow_cols, wide, nb = self.geom
        (sh, sw), (ph, pw), (dh, dw) = self.stride, self.padding, self.dilation
        if self.runs:
            return self._phase_runs_col2im(xp, gcol, n, gpad_buf, out)
        cn = not self.per_image
        if wide:
            L, P = OH * Wp, Hp * Wp + dw * (KW - 1)
            gcol = gcol.reshape(C, KH, KW, n, L)
        else:
            P = H * Wd
            gcol = gcol.reshape(C, KH, KW, n, OH, OW)
            rows = [_tap_span(OH, sh, i * dh - ph, H) for i in range(KH)]
            cols = [_tap_span(OW, sw, j * dw - pw, Wd) for j in range(KW)]
            taps = [(i, j) for i in range(KH) for j in range(KW)
                    if rows[i][1] > rows[i][0] and cols[j][1] > cols[j][0]]
            cover = [(i, j) for i, j in taps if sh == sw == 1 and rows[i][1] - rows[i][0] == H
                     and cols[j][1] - cols[j][0] == Wd]
            if cover:  # first, as a copy
                taps.remove(cover[0])
                taps.insert(0, cover[0])
        if self.phased:
            return self._phased_col2im(xp, gcol, n, gpad_buf, out, rows, cols, taps)
        acc = gpad_buf[:n * C * P].reshape((C, n, P) if cn else (n, C, P))

        def channels(lo, hi):
            g = acc[lo:hi] if cn else acc[:, lo:hi]
            if wide:
                g.fill(0)
                for i in range(KH):
                    for j in range(KW):
                        src = gcol[lo:hi, i, j] if cn else gcol[lo:hi, i, j].swapaxes(0, 1)
                        off = i * dh * Wp + j * dw
                        g[:, :, off:off + L] += src
                plane = g[:, :, :Hp * Wp].reshape(g.shape[:2] + (Hp, Wp))
                plane = plane[:, :, ph:ph + H, pw:pw + Wd]
            else:
                plane = g.reshape(g.shape[:2] + (H, Wd))
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

    def _phased_col2im(self, xp, gcol, n, gpad_buf, out, rows, cols, taps):
        """col2im for strided exact windows: each tap adds into one phase of x (rows h with
        h % stride = r), where its outputs are neighbours -- unit-stride adds instead of
        stride-2 ones -- and each phase then goes to NCHW in one copy.  A phase that one tap
        covers starts as a copy of it, the others from zero.  3x3 stride 2 32->64 at 28x28,
        a chunk of 9 images: 0.49 -> 0.34 ms."""
        N, C, H, Wd = self.geom[:4]
        (sh, sw), (Hq, Wq) = self.stride, self.phase_hw
        acc = gpad_buf[:n * C * sh * sw * Hq * Wq].reshape(C, n, sh, sw, Hq, Wq)
        adds = {}  # phase (r, s) -> [(tap, first phase row, first phase column)]
        for i, j in taps:
            h0, w0 = rows[i][2], cols[j][2]
            adds.setdefault((h0 % sh, w0 % sw), []).append((i, j, h0 // sh, w0 // sw))
        counts = [[-(-(size - r) // step) for r in range(step)]
                  for size, step in ((H, sh), (Wd, sw))]

        def covers(r, s, i, j, a0, b0):
            (o0, o1, _), (q0, q1, _) = rows[i], cols[j]
            return a0 == b0 == 0 and o1 - o0 == counts[0][r] and q1 - q0 == counts[1][s]

        def channels(lo, hi):
            for r in range(sh):
                for s in range(sw):
                    phase = acc[lo:hi, :, r, s, :counts[0][r], :counts[1][s]]
                    todo = sorted(adds.get((r, s), []),
                                  key=lambda t: not covers(r, s, *t))  # a covering tap first
                    if not (todo and covers(r, s, *todo[0])):
                        phase.fill(0)
                    for k, (i, j, a0, b0) in enumerate(todo):
                        (o0, o1, _), (q0, q1, _) = rows[i], cols[j]
                        dst = phase[:, :, a0:a0 + o1 - o0, b0:b0 + q1 - q0]
                        src = gcol[lo:hi, i, j, :, o0:o1, q0:q1]
                        if k == 0 and covers(r, s, i, j, a0, b0):
                            xp.copyto(dst, src)
                        else:
                            dst += src
                    xp.copyto(out[:, lo:hi, r::sh, s::sw], phase.transpose(1, 0, 2, 3))

        parallel_for(C, channels, nbytes=gcol.nbytes, like=gcol)

    # -- phase runs ---------------------------------------------------------------------------

    def _phase_im2col(self, xp, x, n0, n1, scratch):
        """im2col of images n0:n1 of ``x`` (N, C, H, W) itself (no padded copy) for phase runs.
        A tap's columns (c, n, OH, OW) are its stride phase of x -- x[:, c, r::sh, s::sw] --
        shifted by whole rows and columns.  Each phase is copied from x once, into the columns
        of a tap that covers it (not shifted), or a scratch when none does; every other tap of
        the phase is then one copy of (C, n*OH*OW) runs from there, at a flat offset.  Where a
        shift carries it across a row or an image, the columns are padding: zeroed after."""
        N, C, H, Wd, OC, Cg, KH, KW, OH, OW = self.geom[:10]
        sh, sw = self.stride
        n = n1 - n0
        col = scratch[:C * KH * KW * n * OH * OW].reshape(C, KH, KW, n, OH, OW)
        uncovered = [p for p, taps in self.phase_taps.items() if taps[0][0]]
        phases = (self.workspace.take(xp, len(uncovered) * C * n * OH * OW, x.dtype)
                  if uncovered else None)
        part = x[n0:n1]

        def channels(lo, hi):
            for (r, s), taps in self.phase_taps.items():
                covered, i, j = not taps[0][0], taps[0][1], taps[0][2]
                if covered:  # the covering tap's columns hold the phase
                    src, shifted = col[lo:hi, i, j], taps[1:]
                else:
                    k = uncovered.index((r, s))
                    src = phases[k * C * n * OH * OW:(k + 1) * C * n * OH * OW].reshape(
                        C, n, OH, OW)[lo:hi]
                    shifted = taps
                xp.copyto(src, part[:, lo:hi, r::sh, s::sw].transpose(1, 0, 2, 3))
                for _, i, j, di, dj, rows, cols in shifted:
                    _shifted_copy(xp, col[lo:hi, i, j], src, di, dj, rows, cols)
            for i, j in self.zero_taps:
                col[lo:hi, i, j].fill(0)

        parallel_for(C, channels, nbytes=col.nbytes, like=col)
        self.workspace.give(phases)
        return col.reshape(self.groups, Cg * KH * KW, n * OH * OW)

    def _phase_runs_col2im(self, xp, gcol, n, gpad_buf, out):
        """col2im for phase runs: each tap's column gradients, shifted back, add onto its phase
        of x in (C, n*OH*OW) runs, and each phase then goes to NCHW in one copy.  The sums
        build up in place in the column gradients of a tap that covers the phase (``gcol`` is
        scratch), or in ``gpad_buf`` from zero when none does; a phase no tap reaches is zero.
        The places a shift would carry across a row or an image are zeroed before the adds."""
        N, C, H, Wd, OC, Cg, KH, KW, OH, OW = self.geom[:10]
        sh, sw = self.stride
        g = gcol.reshape(C, KH, KW, n, OH, OW)
        acc = gpad_buf[:n * C * H * Wd].reshape(sh, sw, C, n, OH, OW)

        def channels(lo, hi):
            for r in range(sh):
                for s in range(sw):
                    taps = self.phase_taps.get((r, s), [])
                    if taps and not taps[0][0]:
                        phase, todo = g[lo:hi, taps[0][1], taps[0][2]], taps[1:]
                    else:
                        phase, todo = acc[r, s, lo:hi], taps
                        phase.fill(0)
                    for _, i, j, di, dj, rows, cols in todo:
                        _shifted_add(xp, phase, g[lo:hi, i, j], di, dj, rows, cols)
                    xp.copyto(out[:, lo:hi, r::sh, s::sw], phase.transpose(1, 0, 2, 3))

        parallel_for(C, channels, nbytes=gcol.nbytes, like=gcol)


def runs_fit(hw, out_hw, stride) -> bool:
    """Whether a strided convolution of an input ``hw`` (H, W) to ``out_hw`` (OH, OW) can take
    phase runs: each side of the input divisible by its stride and the output exactly input /
    stride (the usual "same" padding of an odd kernel, or a 1x1 kernel), so that a phase of
    x and the columns of one tap have the same shape."""
    (H, Wd), (OH, OW), (sh, sw) = hw, out_hw, stride
    return ((sh > 1 or sw > 1) and H % sh == 0 and Wd % sw == 0 and OH * sh == H
            and OW * sw == Wd)


def _phase_tap(offset, stride, count):
    """(phase, shift, (o0, o1)) of a kernel tap at ``offset`` (i*dil - pad) along one axis,
    for phase runs: the tap reads input position o*stride + offset, i.e. place o + shift of
    phase ``offset % stride`` (``count`` long), which is inside it for o0 <= o < o1."""
    phase, shift = offset % stride, offset // stride
    return phase, shift, (max(0, -shift), max(0, min(count, count - shift)))


def _zero_outside(a, rows, cols):
    """Zero a (c, n, OH, OW) array outside its ``rows`` x ``cols`` (o0, o1) spans."""
    (o0, o1), (q0, q1) = rows, cols
    for part in (a[:, :, :o0], a[:, :, o1:], a[:, :, o0:o1, :q0], a[:, :, o0:o1, q1:]):
        if part.size:
            part.fill(0)


def _shifted_copy(xp, dst, src, di, dj, rows, cols):
    """dst[c, m, o, q] = src[c, m, o + di, q + dj] inside the ``rows`` x ``cols`` spans, 0
    outside; dst and src (c, n, OH, OW), each contiguous per channel.  One copy over each
    channel's whole (n*OH*OW) run at the flat offset di*OW + dj; what it carries across rows
    and images lands outside the spans, which are then zeroed."""
    c = dst.shape[0]
    (o0, o1), (q0, q1) = rows, cols
    if o1 <= o0 or q1 <= q0:
        dst.fill(0)
        return
    run = dst[0].size
    off = di * dst.shape[3] + dj
    d, s = dst.reshape(c, run), src.reshape(c, run)
    if off >= 0:
        xp.copyto(d[:, :run - off], s[:, off:])
    else:
        xp.copyto(d[:, -off:], s[:, :run + off])
    _zero_outside(dst, rows, cols)


def _shifted_add(xp, dst, src, di, dj, rows, cols):
    """The adjoint of :func:`_shifted_copy`: dst[c, m, o + di, q + dj] += src[c, m, o, q]
    inside the spans.  ``src``'s places outside them are zeroed first (src is scratch), so
    the add over whole runs carries nothing across rows or images."""
    c = dst.shape[0]
    run = dst[0].size
    off = di * dst.shape[3] + dj
    _zero_outside(src, rows, cols)
    d, s = dst.reshape(c, run), src.reshape(c, run)
    if off >= 0:
        d[:, off:] += s[:, :run - off]
    else:
        d[:, :run + off] += s[:, -off:]


def _tap_span(count, stride, offset, size):
    """(o0, o1, first): the outputs o0 <= o < o1 whose tap lands inside the input, at
    position o*stride + offset in [0, size), and that position for o0."""
    o0 = max(0, -(offset // stride))
    o1 = min(count, (size - 1 - offset) // stride + 1)
    return o0, o1, o0 * stride + offset
