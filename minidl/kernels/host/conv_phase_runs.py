"""conv2d kernel "phase_runs": a strided convolution whose output is exactly the input /
stride (the usual padding), on the host.  An exact strided window copies rows of OW elements,
and NumPy's cost per row sets the time of those copies; instead x is split into its stride
phases, (C, n, OH, OW) each, and a tap's columns are its phase shifted by whole rows and
columns: one copy of n*OH*OW elements per channel at a flat offset, after which the places the
shift carried across a row or an image (padding) are zeroed.  col2im adds back the same way.
No padded copy is made.  Chunks of CONV_RUNS_CHUNK_BYTES (docs/design/conv.md).  Protocol:
see :mod:`minidl.kernels.host.conv_columns`."""
from __future__ import annotations

from minidl.kernels.host.conv_columns import ColumnsConv
from minidl.kernels.host.conv_common import WORKSPACE, plan_columns, runs_fit
from minidl.kernels.host.conv_layout import ColumnLayout
from minidl.kernels.registry import register
from minidl.parallel import parallel_for

__all__ = ["PhaseRunsLayout", "PhaseRunsConv"]


class PhaseRunsLayout(ColumnLayout):
    """im2col from x's phases and col2im back onto them (see the module docstring)."""

    def __init__(self, plan, workspace):
        super().__init__(plan, workspace)
        g = self.g
        if not (plan.phased and runs_fit((g.H, g.W), (g.OH, g.OW), g.stride)):
            raise ValueError(f"PhaseRunsLayout: phase runs need a strided exact layout whose "
                             f"output is the input / stride, got {g}")
        rows = [_phase_tap(i * g.dilation[0] - g.padding[0], g.stride[0], g.OH)
                for i in range(g.KH)]
        cols = [_phase_tap(j * g.dilation[1] - g.padding[1], g.stride[1], g.OW)
                for j in range(g.KW)]
        # phase (r, s) -> its taps (partial, i, j, di, dj, rows, cols), a covering one first
        # (not shifted, inside everywhere: its columns are the phase itself); taps that only
        # ever meet padding are all zero
        self.phase_taps, self.zero_taps = {}, []
        for i, (r, di, rspan) in enumerate(rows):
            for j, (s, dj, cspan) in enumerate(cols):
                if rspan[1] <= rspan[0] or cspan[1] <= cspan[0]:
                    self.zero_taps.append((i, j))
                    continue
                partial = not (di == dj == 0 and rspan == (0, g.OH) and cspan == (0, g.OW))
                self.phase_taps.setdefault((r, s), []).append(
                    (partial, i, j, di, dj, rspan, cspan))
        for taps in self.phase_taps.values():
            taps.sort()

    def source(self, xp, x):
        return None, x   # the columns come from x's phases, no padded copy

    def im2col(self, xp, x, n0, n1, scratch):
        """im2col of images n0:n1 of ``x`` (N, C, H, W) itself.  A tap's columns (c, n, OH,
        OW) are its stride phase of x -- x[:, c, r::sh, s::sw] -- shifted by whole rows and
        columns.  Each phase is copied from x once, into the columns of a tap that covers it
        (not shifted), or a scratch when none does; every other tap of the phase is then one
        copy of (C, n*OH*OW) runs from there, at a flat offset.  Where a shift carries it
        across a row or an image, the columns are padding: zeroed after."""
        g = self.g
        C, KH, KW, OH, OW = g.C, g.KH, g.KW, g.OH, g.OW
        sh, sw = g.stride
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
        return col.reshape(g.groups, g.Cg * KH * KW, n * OH * OW)

    def col2im(self, xp, gcol, n, gpad_buf, out):
        """Each tap's column gradients, shifted back, add onto its phase of x in (C, n*OH*OW)
        runs, and each phase then goes to NCHW in one copy.  The sums build up in place in the
        column gradients of a tap that covers the phase (``gcol`` is scratch), or in
        ``gpad_buf`` from zero when none does; a phase no tap reaches is zero.  The places a
        shift would carry across a row or an image are zeroed before the adds."""
        g = self.g
        C, OH, OW = g.C, g.OH, g.OW
        sh, sw = g.stride
        gc = gcol.reshape(C, g.KH, g.KW, n, OH, OW)
        acc = gpad_buf[:n * C * g.H * g.W].reshape(sh, sw, C, n, OH, OW)

        def channels(lo, hi):
            for r in range(sh):
                for s in range(sw):
                    taps = self.phase_taps.get((r, s), [])
                    if taps and not taps[0][0]:
                        phase, todo = gc[lo:hi, taps[0][1], taps[0][2]], taps[1:]
                    else:
                        phase, todo = acc[r, s, lo:hi], taps
                        phase.fill(0)
                    for _, i, j, di, dj, rows, cols in todo:
                        _shifted_add(xp, phase, gc[lo:hi, i, j], di, dj, rows, cols)
                    xp.copyto(out[:, lo:hi, r::sh, s::sw], phase.transpose(1, 0, 2, 3))

        parallel_for(C, channels, nbytes=gcol.nbytes, like=gcol)


def _runs_verdict(g):
    if not runs_fit((g.H, g.W), (g.OH, g.OW), g.stride):
        return False, (f"output {g.OH}x{g.OW} is not the input {g.H}x{g.W} / stride "
                       f"{g.stride}")
    return True, f"stride {g.stride}, output = input / stride"


@register("conv2d", "phase_runs", backends=("numpy",), applies=_runs_verdict, priority=20,
          summary="strided im2col from x's stride phases, copied in long runs")
class PhaseRunsConv(ColumnsConv):
    """One strided conv2d call through phase runs (see the module docstring)."""

    @staticmethod
    def make_plan(g):
        return plan_columns(g, runs=True)

    def make_layout(self):
        return PhaseRunsLayout(self.plan, WORKSPACE)

    def redo_source(self, xp, x):
        return x


def _phase_tap(offset, stride, count):
    """(phase, shift, (o0, o1)) of a kernel tap at ``offset`` (i*dil - pad) along one axis:
    the tap reads input position o*stride + offset, i.e. place o + shift of phase ``offset %
    stride`` (``count`` long), which is inside it for o0 <= o < o1."""
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
