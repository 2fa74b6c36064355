"""Max and average pooling with overlapping windows (stride < kernel: 3x3 stride 2, stride 1)
on the host, over "wide" stride phases: each step of the taps runs over whole output planes
instead of rows of OW elements (NumPy's cost per row is what limits the taps on a CPU).

    x (N, C, H, W)  ->  y (N, C, OH, OW)

Host (NumPy) only: on a GPU the taps' elementwise kernels do not pay per row.  The planes go in
blocks of about ``tuning.WIDE_PHASES_BLOCK_BYTES``; measurements in docs/design/pooling.md.
"""
from __future__ import annotations

from minidl.kernels import tuning
from minidl.kernels.pool_taps import avg_divisor, plane_divisor
from minidl.kernels.registry import register
from minidl.parallel import parallel_for

__all__ = ["WidePhases", "WideMax", "WideMean"]


class WidePhases:
    """Pooling on the host over "wide" stride phases, so each step runs over whole planes.

    The padded input is split into its stride phases ``Q`` (sh, sw, planes, Hq, Wq) -- the
    padding (and a slack row below) -inf for max pooling, 0 for average pooling -- so that
    tap (i, j) of every window is phase (i % sh, j % sw) at offset (i // sh, j // sw).  Output
    rows are taken Wq wide (OW real columns, the rest junk), so that a tap's values for a whole
    output plane are ONE run of OH*Wq elements of its phase plane, at a flat offset; every
    max, add and compare of the pooling runs over such runs instead of rows of OW elements
    (NumPy's cost per row is what limits the tap-by-tap path on a CPU: 3x3 stride 2 on 14x14
    outputs).  The junk columns take values from the next row; their output is dropped and
    their gradient is zero.  The planes (N*C) go in blocks that stay in cache, split over
    host threads.
    """

    def __init__(self, x_shape, kernel, stride, padding):
        N, C, H, W = x_shape
        (KH, KW), (sh, sw), (ph, pw) = kernel, stride, padding
        self.x_shape, self.kernel, self.stride = tuple(x_shape), kernel, stride
        Hp, Wp = H + 2 * ph, W + 2 * pw
        self.OH, self.OW = (Hp - KH) // sh + 1, (Wp - KW) // sw + 1
        # one slack row: a tap's run starts up to (KW-1)//sw past its first row's start
        self.Hq, self.Wq = -(-Hp // sh) + 1, -(-Wp // sw)
        # per phase (r, s): x[:, :, h0::sh, w0::sw] goes to Q[r, s, :, a0:a0+na, b0:b0+nb]
        self.parts = {}
        for r in range(sh):
            for s in range(sw):
                a0, b0 = -((r - ph) // sh), -((s - pw) // sw)
                h0, w0 = a0 * sh + r - ph, b0 * sw + s - pw
                na, nb = len(range(h0, H, sh)), len(range(w0, W, sw))
                self.parts[r, s] = (a0, na, h0, b0, nb, w0)
        self.taps = [(i % sh, j % sw, (i // sh) * self.Wq + j // sw)
                     for i in range(KH) for j in range(KW)]

    # -- the layout ---------------------------------------------------------------------------
    def _fill(self, xp, planes, Q, fill):
        """Q (sh, sw, n, Hq, Wq) = the stride phases of ``planes`` (n, H, W), ``fill`` in the
        padding."""
        sh, sw = self.stride
        for (r, s), (a0, na, h0, b0, nb, w0) in self.parts.items():
            q = Q[r, s]
            q[:, :a0].fill(fill)
            q[:, a0 + na:].fill(fill)
            if b0:
                q[:, a0:a0 + na, :b0].fill(fill)
            if b0 + nb < self.Wq:
                q[:, a0:a0 + na, b0 + nb:].fill(fill)
            xp.copyto(q[:, a0:a0 + na, b0:b0 + nb], planes[:, h0::sh, w0::sw])

    def _unfill(self, xp, G, planes):
        """planes (n, H, W) = the inside of the phases G (sh, sw, n, Hq, Wq)."""
        sh, sw = self.stride
        for (r, s), (a0, na, h0, b0, nb, w0) in self.parts.items():
            xp.copyto(planes[:, h0::sh, w0::sw], G[r, s, :, a0:a0 + na, b0:b0 + nb])

    def _tap_runs(self, A, lo, hi):
        """Per tap, row-major: the tap's values for output planes lo:hi of the (sh, sw,
        planes, Hq, Wq) array A, as a (hi - lo, OH*Wq) view of runs."""
        L = self.OH * self.Wq
        flat = A.reshape(A.shape[:3] + (self.Hq * self.Wq,))
        return [flat[r, s, lo:hi, off:off + L] for r, s, off in self.taps]

    def _plane_bytes(self, itemsize):
        """Bytes a plane takes in a block: its phases and accumulators, and the wide rows of
        its output and temporaries."""
        sh, sw = self.stride
        return (2 * sh * sw * self.Hq + 6 * self.OH) * self.Wq * itemsize

    def _each_block(self, xp, work, dtype, like, buffers=True):
        """``work(p0, p1, Q, w)`` per block of planes (about
        ``tuning.WIDE_PHASES_BLOCK_BYTES``), in parallel parts, with (when asked) a phases
        buffer Q (sh, sw, n, Hq, Wq) and a wide output buffer w (n, OH, Wq) whose junk columns
        are zero, both for the block's n planes only (else None)."""
        N, C = self.x_shape[:2]
        sh, sw = self.stride
        per_plane = self._plane_bytes(xp.dtype(dtype).itemsize)
        step = max(1, tuning.WIDE_PHASES_BLOCK_BYTES // per_plane)

        def part(lo, hi):
            blocks = [(b, min(hi, b + step)) for b in range(lo, hi, step)]
            Q_buf = w_buf = None
            if buffers:
                most = max(b1 - b0 for b0, b1 in blocks)
                Q_buf = xp.empty((sh, sw, most, self.Hq, self.Wq), dtype=dtype)
                w_buf = xp.empty((most, self.OH, self.Wq), dtype=dtype)
                w_buf[:, :, self.OW:] = 0
            for p0, p1 in blocks:
                n = p1 - p0
                work(p0, p1, None if Q_buf is None else Q_buf[:, :, :n],
                     None if w_buf is None else w_buf[:n])

        parallel_for(N * C, part, nbytes=N * C * per_plane, like=like)

    # -- max pooling ---------------------------------------------------------------------------
    def max_forward(self, xp, x):
        """(y (N, C, OH, OW), Q, yw): the pooled maxima, and what backward needs (the whole
        batch's phases and wide maxima)."""
        N, C, H, W = self.x_shape
        OH, OW, Wq = self.OH, self.OW, self.Wq
        sh, sw = self.stride
        Q = xp.empty((sh, sw, N * C, self.Hq, Wq), dtype=x.dtype)
        yw = xp.empty((N * C, OH * Wq), dtype=x.dtype)
        y = xp.empty((N, C, OH, OW), dtype=x.dtype)
        planes = x.reshape(N * C, H, W)  # a copy only when x is a strided view

        def block(p0, p1, _, __):
            self._fill(xp, planes[p0:p1], Q[:, :, p0:p1], float("-inf"))
            taps = self._tap_runs(Q, p0, p1)
            out = yw[p0:p1]
            xp.copyto(out, taps[0])
            for view in taps[1:]:
                xp.maximum(out, view, out=out)
            xp.copyto(y.reshape(N * C, OH, OW)[p0:p1], out.reshape(-1, OH, Wq)[:, :, :OW])

        self._each_block(xp, block, x.dtype, x, buffers=False)
        return y, Q, yw

    def max_backward(self, xp, gy, Q, yw):
        """gx (N, C, H, W): each window's gradient to its first maximum (row-major taps)."""
        N, C, H, W = self.x_shape
        OH, OW, Wq = self.OH, self.OW, self.Wq
        gx = xp.empty(self.x_shape, dtype=gy.dtype)
        last = len(self.taps) - 1
        gy_planes, gx_planes = gy.reshape(N * C, OH, OW), gx.reshape(N * C, H, W)

        def block(p0, p1, G, g):
            n = p1 - p0
            G.fill(0)
            xp.copyto(g[:, :, :OW], gy_planes[p0:p1])
            g, y = g.reshape(n, OH * Wq), yw[p0:p1]
            hit = xp.empty(y.shape, dtype=bool)
            free = xp.empty(y.shape, dtype=bool)  # windows no earlier tap has claimed
            share = xp.empty(y.shape, dtype=gy.dtype)
            for k, (view, gview) in enumerate(zip(self._tap_runs(Q, p0, p1),
                                                  self._tap_runs(G, 0, n))):
                xp.equal(view, y, out=hit)
                if k == 0:
                    xp.logical_not(hit, out=free)
                else:
                    xp.logical_and(hit, free, out=hit)
                    if k < last:
                        xp.logical_xor(free, hit, out=free)
                xp.multiply(g, hit, out=share)
                gview += share
            self._unfill(xp, G, gx_planes[p0:p1])

        self._each_block(xp, block, gy.dtype, gy)
        return gx

    # -- average pooling -----------------------------------------------------------------------
    def mean_forward(self, xp, x, divisor):
        """y (N, C, OH, OW): the windows' sums (0 in the padding) divided by ``divisor`` (a
        scalar, or (OH, OW) per window)."""
        N, C, H, W = self.x_shape
        OH, OW, Wq = self.OH, self.OW, self.Wq
        y = xp.empty((N, C, OH, OW), dtype=x.dtype)
        planes, y_planes = x.reshape(N * C, H, W), y.reshape(N * C, OH, OW)

        def block(p0, p1, Q, w):
            self._fill(xp, planes[p0:p1], Q, 0)
            taps = self._tap_runs(Q, 0, p1 - p0)
            out = w.reshape(p1 - p0, OH * Wq)
            xp.copyto(out, taps[0])
            for view in taps[1:]:
                out += view
            xp.divide(w[:, :, :OW], divisor, out=y_planes[p0:p1])

        self._each_block(xp, block, x.dtype, x)
        return y

    def mean_backward(self, xp, gy, divisor):
        """gx (N, C, H, W): gy / ``divisor`` added into every pixel of each window."""
        N, C, H, W = self.x_shape
        OH, OW, Wq = self.OH, self.OW, self.Wq
        gx = xp.empty(self.x_shape, dtype=gy.dtype)
        gy_planes, gx_planes = gy.reshape(N * C, OH, OW), gx.reshape(N * C, H, W)

        def block(p0, p1, G, g):
            G.fill(0)
            xp.divide(gy_planes[p0:p1], divisor, out=g[:, :, :OW])
            gf = g.reshape(p1 - p0, OH * Wq)
            for view in self._tap_runs(G, 0, p1 - p0):
                view += gf
            self._unfill(xp, G, gx_planes[p0:p1])

        self._each_block(xp, block, gy.dtype, gy)
        return gx


def _applies(g):
    if g.stride != (g.KH, g.KW):
        return True, f"stride {g.stride} is not the kernel {g.KH}x{g.KW} (overlapping or gaps)"
    return False, "stride = kernel: windows side by side"


def _wide_phases(g):
    return WidePhases((g.N, g.C, g.H, g.W), (g.KH, g.KW), g.stride, g.padding)


@register("max_pool2d", "wide_phases", backends=("numpy",), applies=_applies, priority=20)
class WideMax:
    """Max pooling whose stride is not its kernel, over wide stride phases on the host."""

    def __init__(self, geometry):
        self.wide = _wide_phases(geometry)

    def forward(self, xp, x):
        y, self.Q, self.yw = self.wide.max_forward(xp, x)
        return y

    def backward(self, xp, gy):
        return self.wide.max_backward(xp, gy, self.Q, self.yw)


@register("avg_pool2d", "wide_phases", backends=("numpy",), applies=_applies, priority=20)
class WideMean:
    """Average pooling whose stride is not its kernel, over wide stride phases on the host."""

    def __init__(self, geometry):
        self.geometry = geometry
        self.wide = _wide_phases(geometry)

    def forward(self, xp, x):
        self.divisor = plane_divisor(avg_divisor(xp, self.geometry, x.dtype))
        return self.wide.mean_forward(xp, x, self.divisor)

    def backward(self, xp, gy):
        return self.wide.mean_backward(xp, gy, self.divisor)
