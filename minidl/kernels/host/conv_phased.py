"""col2im for strided exact windows ("phased"): each kernel tap adds into one stride phase of
x (rows h with h % stride = r), where its outputs are neighbours -- unit-stride adds instead of
strided ones -- and each phase then goes to NCHW in one copy (docs/design/conv.md)."""
from __future__ import annotations

from minidl.parallel import parallel_for

__all__ = ["phased_col2im", "tap_span"]


def tap_span(count, stride, offset, size):
    """(o0, o1, first): the outputs o0 <= o < o1 whose tap lands inside the input, at
    position o*stride + offset in [0, size), and that position for o0."""
    o0 = max(0, -(offset // stride))
    o1 = min(count, (size - 1 - offset) // stride + 1)
    return o0, o1, o0 * stride + offset


def phased_col2im(xp, g, phase_hw, gcol, n, gpad_buf, out, rows, cols, taps):
    """Sum gcol (C, KH, KW, n, OH, OW) of n images onto ``out`` (n, C, H, W) for the conv of
    geometry ``g``; ``rows``/``cols`` are the taps' :func:`tap_span` along each axis, ``taps``
    the (i, j) that meet the input, ``phase_hw`` the (Hq, Wq) size of a phase.  A phase that
    one tap covers starts as a copy of it, the others from zero."""
    C, H, Wd = g.C, g.H, g.W
    (sh, sw), (Hq, Wq) = g.stride, phase_hw
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
