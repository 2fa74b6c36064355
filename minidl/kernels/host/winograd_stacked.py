"""conv2d's kernel "winograd_stacked": a KxK convolution with stride 1 or 2 (5x5, per
tuning.STACKED_WINOGRAD) as ONE 3x3 stride-1 convolution through Winograd's F(2x2, 3x3) on a
stack of pieces of the input (see :class:`StackedWinograd`); 16 multiplies per output against
im2col's 25 (docs/design/conv.md).  Protocol: see :mod:`minidl.kernels.host.conv_columns`."""
from __future__ import annotations

import numpy

from minidl.kernels.host.conv_common import WORKSPACE, stacked_verdict
from minidl.kernels.host.winograd import Winograd3x3, WinogradConv
from minidl.kernels.host.winograd_transforms import zero_border
from minidl.kernels.registry import register

__all__ = ["StackedWinograd", "StackedWinogradConv", "stacked_groups"]


def stacked_groups(k: int, stride: int) -> int | None:
    """How many 3x3 stride-1 pieces :class:`StackedWinograd` splits a kernel of k taps with
    this stride into along one axis, or None when it does not: stride 1 takes odd kernels
    (pieces 2 taps apart, which share one input transform), stride 2 kernels of up to 6 taps
    (the two phases, 3 taps each at most)."""
    if stride == 1:
        return k // 2 if k >= 3 and k % 2 else None
    if stride == 2:
        return 2 if k <= 6 else None
    return None


def _axis_plan(k, s, pad, size, out):
    """One axis of :class:`StackedWinograd`'s split: (offsets, taps, ranges).  Piece g reads the
    padded input at s*i + offsets[g] for its rows i = 0 .. out+1; tap t of the kernel is tap
    u of piece g for (g, u) = taps[t]; ranges[g] = (lo, hi) are the rows i whose input is
    inside the unpadded x (row s*i + offsets[g] - pad), the rest being padding."""
    if s == 1:  # pieces 2 taps apart: 0-2, 2-4, ...; a shared tap belongs to the later piece
        count = stacked_groups(k, 1)
        offsets = [2 * g for g in range(count)]
        taps = [(min(t // 2, count - 1), t - 2 * min(t // 2, count - 1)) for t in range(k)]
    else:       # the s phases: rows s*i + r, taps r, r + s, r + 2s
        offsets = list(range(s))
        taps = [(t % s, t // s) for t in range(k)]
    ranges = []
    for r in offsets:
        lo = max(0, -((r - pad) // s))                 # ceil((pad - r) / s)
        hi = min(out + 2, -((r - pad - size) // s))    # ceil((size + pad - r) / s)
        ranges.append((lo, max(lo, hi)))
    return offsets, taps, ranges


class StackedWinograd(Winograd3x3):
    """A KxK convolution with stride 1 or 2 (5x5 in conv2d) as ONE 3x3 stride-1 convolution
    through F(2x2, 3x3), on a stack of pieces of the input:

        y[o] = sum_t w[t] xpad[s*o + t] = sum_g sum_u w_g[u] x_g[o + u],   x_g[i] = xpad[s*i + r_g]

    along each axis, with t = s*u + r_g.  Stride 2 splits the input into its 2 phases (even and
    odd rows: r = 0, 1) and the kernel into taps (0, 2, 4) and (1, 3); stride 1 into the input
    shifted by 0 and 2 rows and the kernel into taps 0-1 and 2-4 (r = 0, 2).  The pieces of
    both axes are stacked as channels -- (gh, gw, c), 4*C of them for a 5x5 kernel -- and the
    kernel's pieces as the 3x3 filters of those channels, zero where a piece has no tap (6 x 6
    slots for 25 taps).  Winograd then costs 16 multiplies per 2x2 outputs per stacked channel,
    64 per original channel: 16 per output, against 25 for the direct method, and its
    products have K = 4*C.  With stride 1 the pieces' input tiles are one transform's tiles
    shifted (``shared``), and their gradients add back into it; with stride 2 the phases are
    laid side by side in the tile planes that the 3x3 path fills anyway (``_fill_plane``) and
    go back to x from there (``_plane_to_gx``).  gW gathers the kernel's taps from the 3x3
    filters' gradients.
    """

    def __init__(self, x_shape, W_shape, stride, padding, dtype, workspace):
        N, C, H, Wd = x_shape
        OC, _, KH, KW = W_shape
        (sh, sw), (ph, pw) = stride, padding
        if sh != sw or stacked_groups(KH, sh) is None or stacked_groups(KW, sw) is None:
            raise ValueError(f"StackedWinograd: a {KH}x{KW} kernel with stride {stride} does "
                             "not split into 3x3 pieces (see stacked_groups)")
        OH, OW = (H + 2 * ph - KH) // sh + 1, (Wd + 2 * pw - KW) // sw + 1
        self.plans = (_axis_plan(KH, sh, ph, H, OH), _axis_plan(KW, sw, pw, Wd, OW))
        self.real = (C, H, Wd, sh, sw, ph, pw)
        G = len(self.plans[0][0]) * len(self.plans[1][0])
        super().__init__((N, G * C, OH + 2, OW + 2), (OC, G * C, 3, 3), (0, 0), dtype,
                         workspace)
        self.x_shape = tuple(x_shape)
        # stride 1: the pieces are x shifted by whole tiles (2 rows), so their input tiles are
        # those of ONE 3x3 Winograd over the padded x, with a tile more per further piece
        # along each axis (odd kernels): transform x once (C channels), copy the shifted tiles
        self.shared = None
        if sh == 1:
            self.shared = Winograd3x3(x_shape, (OC, C, 3, 3), padding, dtype, workspace)
            GH, GW = len(self.plans[0][0]), len(self.plans[1][0])
            assert (self.shared.geom.th, self.shared.geom.tw) == (self.geom.th + GH - 1,
                                                                 self.geom.tw + GW - 1)
        else:  # stride 2: every element of x is in exactly one phase, as one of its rows i
            assert self._phases_cover_x_once()

    def _pieces(self):
        """(channel block, row offset, row range, column offset, column range) per piece."""
        (offs_h, _, rng_h), (offs_w, _, rng_w) = self.plans
        C = self.real[0]
        for gh, (rh, (ilo, ihi)) in enumerate(zip(offs_h, rng_h)):
            for gw, (rw, (jlo, jhi)) in enumerate(zip(offs_w, rng_w)):
                q = gh * len(offs_w) + gw
                yield slice(q * C, (q + 1) * C), rh, (ilo, ihi), rw, (jlo, jhi)

    def _shifts(self):
        """(th, tw) tiles of a stacked image, (th0, tw0) of the shared transform's, C, and
        the pieces along each axis (GH, GW)."""
        return (self.geom.th, self.geom.tw, self.shared.geom.th, self.shared.geom.tw,
                self.real[0],
                len(self.plans[0][0]), len(self.plans[1][0]))

    def _input_transform(self, xp, x, V):
        """V (16, T, G*C): with stride 1, piece (a, b)'s tiles are the shared transform's
        tiles (a, b) further on; else the 3x3 path's transform of the stacked plane."""
        if self.shared is None:
            return super()._input_transform(xp, x, V)
        n = x.shape[0]
        th, tw, th0, tw0, C, GH, GW = self._shifts()
        buf = self.ws.take(xp, 16 * th0 * tw0 * n * C, V.dtype)
        V0 = buf.reshape(16, th0 * tw0 * n, C)
        self.shared._input_transform(xp, x, V0)
        V0 = V0.reshape(16, th0, tw0, n, C)
        V7 = V.reshape(16, th, tw, n, GH, GW, C)
        for a in range(GH):
            for b in range(GW):
                xp.copyto(V7[:, :, :, :, a, b], V0[:, a:a + th, b:b + tw])
        self.ws.give(buf)

    def _overlap_add(self, xp, gV, gx):
        """gx from gV (16, T, G*C): with stride 1, the pieces' tile gradients add into the
        shared transform's tiles, which then go through its overlap-add once."""
        if self.shared is None:
            return super()._overlap_add(xp, gV, gx)
        n = gx.shape[0]
        th, tw, th0, tw0, C, GH, GW = self._shifts()
        buf = self.ws.take(xp, 16 * th0 * tw0 * n * C, gV.dtype)
        g0 = buf.reshape(16, th0, tw0, n, C)
        g7 = gV.reshape(16, th, tw, n, GH, GW, C)
        g0[...] = 0
        for a in range(GH):
            for b in range(GW):
                g0[:, a:a + th, b:b + tw] += g7[:, :, :, :, a, b]
        self.shared._overlap_add(xp, buf.reshape(16, -1, C), gx)
        self.ws.give(buf)

    def _fill_plane(self, xp, p, x):
        """Stride 2: p (Hp, Wp, m, 4*C) = the phases of the images x (m, C, H, W), side by side
        as channels.  x goes through one transposing copy to an (H, W, m, C) plane; the
        phases then come from it with runs of channels, not from strided NCHW reads."""
        plane = self.ws.take(xp, (x.shape[2], x.shape[3]) + x.shape[:2], x.dtype)
        xp.copyto(plane, x.transpose(2, 3, 0, 1))
        for block, r_h, rows, r_w, cols in self._pieces():
            piece = p[..., block]
            zero_border(piece, rows[0], cols[0], rows[1] - rows[0], cols[1] - cols[0])
            if rows[1] > rows[0] and cols[1] > cols[0]:
                xp.copyto(piece[rows[0]:rows[1], cols[0]:cols[1]],
                          self._window(plane, r_h, rows, r_w, cols))
        self.ws.give(plane)

    def _plane_to_gx(self, xp, g, gx):
        """Stride 2: gx (m, C, H, W) from the phases' gradients in g (Hp, Wp, m, 4*C): each
        phase goes back to its rows and columns of an (H, W, m, C) plane, which then goes to
        NCHW in one transposing copy."""
        plane = self.ws.take(xp, gx.shape[2:] + gx.shape[:2], gx.dtype)
        for block, r_h, rows, r_w, cols in self._pieces():
            if rows[1] > rows[0] and cols[1] > cols[0]:
                xp.copyto(self._window(plane, r_h, rows, r_w, cols),
                          g[rows[0]:rows[1], cols[0]:cols[1], :, block])
        xp.copyto(gx, plane.transpose(2, 3, 0, 1))
        self.ws.give(plane)

    def _window(self, plane, r_h, rows, r_w, cols):
        """The view of an (H, W, ...) plane of x that rows x cols of the phase with offsets
        (r_h, r_w) hold."""
        C, H, Wd, sh, sw, ph, pw = self.real
        h0, w0 = sh * rows[0] + r_h - ph, sw * cols[0] + r_w - pw
        return plane[h0:h0 + sh * (rows[1] - rows[0] - 1) + 1:sh,
                     w0:w0 + sw * (cols[1] - cols[0] - 1) + 1:sw]

    def _phases_cover_x_once(self) -> bool:
        """Whether every element of x is in exactly one phase's rows and columns."""
        C, H, Wd, sh, sw, ph, pw = self.real
        for (offsets, _, ranges), s, pad, size in zip(self.plans, (sh, sw), (ph, pw), (H, Wd)):
            count = numpy.zeros(size, dtype=int)
            for r, (lo, hi) in zip(offsets, ranges):
                count[s * numpy.arange(lo, hi) + r - pad] += 1
            if not (count == 1).all():
                return False
        return True

    def _stack_index(self, xp):
        """Index arrays putting the kernel's (KH, KW) taps in the (GH, 3, GW, 3) slots."""
        (_, taps_h, _), (_, taps_w, _) = self.plans
        gh, uh = (xp.asarray(numpy.array(v)[:, None]) for v in zip(*taps_h))
        gw, uw = (xp.asarray(numpy.array(v)[None, :]) for v in zip(*taps_w))
        return gh, uh, gw, uw

    def forward(self, xp, x, W, b, keep_V, keep_U):
        """y = conv2d(x, W, b, stride, padding) for W (OC, C, KH, KW): its taps go into the
        stacked 3x3 filters (OC, G*C, 3, 3), zero where a piece has no tap."""
        OC, C, KH, KW = W.shape
        GH, GW = len(self.plans[0][0]), len(self.plans[1][0])
        W6 = xp.zeros((GH, 3, GW, 3, OC, C), dtype=W.dtype)
        W6[self._stack_index(xp)] = W.transpose(2, 3, 0, 1)
        W3 = xp.ascontiguousarray(W6.transpose(4, 0, 2, 5, 1, 3)).reshape(OC, -1, 3, 3)
        return super().forward(xp, x, W3, b, keep_V, keep_U)

    def backward(self, xp, gy, x, need_x, need_W, need_b):
        """(gx, gW, gb) as Winograd3x3.backward; gW (OC, C, KH, KW) gathered from the
        stacked 3x3 filters' gradients."""
        gx, gW3, gb = super().backward(xp, gy, x, need_x, need_W, need_b)
        gW = None
        if gW3 is not None:
            GH, GW = len(self.plans[0][0]), len(self.plans[1][0])
            OC, C = gW3.shape[0], self.real[0]
            gW6 = gW3.reshape(OC, GH, GW, C, 3, 3).transpose(1, 4, 2, 5, 0, 3)
            gW = xp.ascontiguousarray(gW6[self._stack_index(xp)].transpose(2, 3, 0, 1))
        return gx, gW, gb


class StackedWinogradConv(WinogradConv):
    """conv2d's kernel protocol around :class:`StackedWinograd`."""

    @staticmethod
    def make_tiles(g):
        return StackedWinograd((g.N, g.C, g.H, g.W), (g.OC, g.C, g.KH, g.KW), g.stride,
                               g.padding, g.dtype, WORKSPACE)


register("conv2d", "winograd_stacked", backends=("numpy",), applies=stacked_verdict,
         priority=30, summary="a 5x5 kernel as one 3x3 Winograd over 4 stacked pieces "
                                      "of x")(StackedWinogradConv)
