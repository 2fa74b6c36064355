"""2-D pooling: max, average and global average, over NCHW inputs.

    x (N, C, H, W)  ->  y (N, C, OH, OW),   OH = (H + 2*pad_h - KH) // stride_h + 1  (floor)

Both windowed pools are written as a loop over the KH*KW kernel taps: tap (i, j) is the strided
view ``xpad[:, :, i::sh, j::sw]`` cropped to (OH, OW), so each step is one elementwise op on
output-sized arrays, never a Python loop per pixel.  Backward scatters each tap's share back with
a slice-add; within one tap the slices never overlap, so ``+=`` is exact even when windows do
(3x3 stride 2), on NumPy and CuPy alike (no duplicate-index scatter).  When the windows tile the
input exactly (2x2 stride 2 on even sizes) each tap is a plain write into an empty buffer, and
average pooling sums each window's columns and rows as long strided runs (``tiled_mean``).

Max pooling's commonest case, 2x2 stride 2 on even sizes, has its own path: two halvings on
long runs (columns, then rows) that keep which half won for backward (``halving_max``; also
used by :mod:`minidl.functions.batchnorm_pool`).  Overlapping windows (3x3 stride 2, stride 1)
on the host, max and average, take the same taps over "wide" stride phases of the padded
input, where a tap's values for a whole output plane are one run (``WidePhases``).

Max pooling pads with -inf and sends each window's gradient to the FIRST maximal element in
row-major order, as PyTorch does, so tied values (common after ReLU: windows of zeros) get the
gradient once, not once per tie.  A window holding NaN outputs NaN and passes no gradient.
Average pooling pads with zeros and divides by KH*KW (``count_include_pad=True``, PyTorch's
default) or by the number of real pixels under the window.
"""
from __future__ import annotations

import numbers

from minidl import backend as B
from minidl.autograd import Function
from minidl.functions.arguments import as_input as _as_input, output_hw as _output_hw, pair as _pair, pool_args
from minidl.parallel import parallel_for

__all__ = ["max_pool2d", "avg_pool2d", "global_avg_pool2d"]

# The 2x2 stride-2 fast path's row level works on rows of OW elements; below this many the
# per-row overhead loses to the general path (measured in the MNIST CNN's training step on a
# 2-core CPU: 28x28 inputs 3.9 -> 3.2 ms forward + backward, 14x14 inputs 1.7 -> 2.0 ms).
_HALVING_MIN_OW = 8
# Pooling on the host whose stride is not its kernel (overlapping windows) runs over wide
# stride phases (WidePhases), in blocks of planes of about _WIDE_BLOCK_BYTES.  Fwd+bwd on a
# 2-core CPU, interleaved, against the taps: max 3x3 stride 2 padding 1 on 128x32x28x28 13.4 ->
# 8.5 ms, on 16x64x112x112 (a ResNet stem) 99.8 -> 29.2 ms, 3x3 stride 1 on 128x64x14x14 14.6
# -> 9.8 ms; average 3x3 stride 2 on 128x32x28x28 14.3 -> 5.0 ms, 3x3 stride 1 on 128x64x14x14
# 16.9 -> 5.7 ms (6.2 without the padding in the count).  Windows side by side (stride =
# kernel) keep the taps: max 2x2 stride 2 on 7x7 took 0.87 -> 1.19 ms.  Blocks (max 3x3
# stride 2 at 28x28): 512 KB 20.5 ms (too many calls), 2 MB 11.5, 8 MB 10.5, the whole batch
# 11.2 (taps 15.6).
_WIDE_PHASES = True
_WIDE_BLOCK_BYTES = 8 << 20


def _tap(a, i, j, stride, OH, OW):
    """The view of tap (i, j): view[n, c, oh, ow] = a[n, c, oh*sh + i, ow*sw + j]."""
    sh, sw = stride
    return a[:, :, i:i + sh * (OH - 1) + 1:sh, j:j + sw * (OW - 1) + 1:sw]


def _taps(a, KH, KW, stride, OH, OW):
    """(i, j, view) for every kernel tap, row-major."""
    for i in range(KH):
        for j in range(KW):
            yield i, j, _tap(a, i, j, stride, OH, OW)


class _Pool2d(Function):
    fresh_grads = True  # gx is a new array (or a view of one: copied when kept)

    def __init__(self, kernel, stride, padding):
        self.kernel, self.stride, self.padding = kernel, stride, padding

    def _pad(self, xp, x, value):
        """x padded by ``padding`` with ``value`` (x itself when there is no padding)."""
        (ph, pw) = self.padding
        if ph == 0 and pw == 0:
            return x
        N, C, H, W = x.shape
        xpad = xp.full((N, C, H + 2 * ph, W + 2 * pw), value, dtype=x.dtype)
        xpad[:, :, ph:ph + H, pw:pw + W] = x
        return xpad

    def _geometry(self, x):
        self.x_shape = x.shape
        self.out_hw = _output_hw(self.where, x.shape[2:], self.kernel, self.stride,
                                 self.padding)
        return self.out_hw

    def _grad_buffer(self, xp, dtype):
        N, C, H, W = self.x_shape
        ph, pw = self.padding
        return xp.zeros((N, C, H + 2 * ph, W + 2 * pw), dtype=dtype)

    def _crop(self, gpad):
        N, C, H, W = self.x_shape
        ph, pw = self.padding
        if ph == 0 and pw == 0:
            return gpad
        return gpad[:, :, ph:ph + H, pw:pw + W]


class MaxPool2d(_Pool2d):
    where = "max_pool2d"

    def forward(self, x):
        xp = B.get_array_module(x)
        OH, OW = self._geometry(x)
        N, C, H, W = x.shape
        self.halving = (self.kernel == self.stride == (2, 2) and self.padding == (0, 0)
                        and (H, W) == (2 * OH, 2 * OW) and OW >= _HALVING_MIN_OW)
        if self.halving:
            return self._halving_forward(xp, x)
        self.tiled = (self.stride == self.kernel and self.padding == (0, 0)
                      and (H, W) == (OH * self.kernel[0], OW * self.kernel[1]))
        self.wide = None
        if _WIDE_PHASES and self.stride != self.kernel and B.backend_of(x).name == "numpy":
            self.wide = WidePhases(x.shape, self.kernel, self.stride, self.padding)
            y, self.Q, self.yw = self.wide.max_forward(xp, x)
            return y
        xpad = self._pad(xp, x, float("-inf"))
        y = xp.empty((x.shape[0], x.shape[1], OH, OW), dtype=x.dtype)

        def part(lo, hi):  # images lo:hi (in parallel on a multi-core CPU)
            yp = y[lo:hi]
            taps = _taps(xpad[lo:hi], *self.kernel, self.stride, OH, OW)
            xp.copyto(yp, next(taps)[2])
            for _, _, view in taps:
                xp.maximum(yp, view, out=yp)

        parallel_for(x.shape[0], part, nbytes=x.nbytes, like=x)
        self.xpad, self.y = xpad, y
        return y

    # -- 2x2 windows, stride 2, even sizes: the pooling of almost every CNN (halving_max) ------
    def _halving_forward(self, xp, x):
        y, self.winners = halving_max(xp, x)
        return y

    def _halving_backward(self, xp, gy):
        gx = xp.empty(self.x_shape, dtype=gy.dtype)
        halving_route(xp, gy, self.winners, gx)
        return gx

    def backward(self, gy):
        xp = B.get_array_module(gy)
        if self.halving:
            return self._halving_backward(xp, gy)
        if self.wide is not None:
            return self.wide.max_backward(xp, gy, self.Q, self.yw)
        KH, KW = self.kernel
        OH, OW = self.out_hw
        N, C, H, W = self.x_shape
        # windows that tile x exactly (2x2 stride 2 on even sizes): every pixel is in one
        # window, so each tap's gradient is written straight into an uninitialised buffer
        # instead of added into zeros (2x faster on a CPU)
        tiled = self.tiled
        gpad = xp.empty(self.x_shape, dtype=gy.dtype) if tiled \
            else self._grad_buffer(xp, gy.dtype)

        def part(lo, hi):  # images lo:hi (in parallel on a multi-core CPU)
            y, g, gp = self.y[lo:hi], gy[lo:hi], gpad[lo:hi]
            free = None  # windows whose maximum has not been claimed by an earlier tap
            last = KH * KW - 1
            for k, (i, j, view) in enumerate(_taps(self.xpad[lo:hi], KH, KW, self.stride,
                                                   OH, OW)):
                hit = view == y
                if free is None:
                    free = ~hit
                else:
                    hit &= free
                    if k < last:
                        free ^= hit
                gview = _tap(gp, i, j, self.stride, OH, OW)
                if tiled:
                    xp.multiply(g, hit, out=gview)
                else:
                    gview += g * hit

        parallel_for(N, part, nbytes=gpad.nbytes, like=gy)
        return self._crop(gpad)


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
        """``work(p0, p1, Q, w)`` per block of planes (about _WIDE_BLOCK_BYTES), in parallel
        parts, with (when asked) a phases buffer Q (sh, sw, n, Hq, Wq) and a wide output buffer
        w (n, OH, Wq) whose junk columns are zero, both for the block's n planes only (else
        None)."""
        N, C = self.x_shape[:2]
        sh, sw = self.stride
        per_plane = self._plane_bytes(xp.dtype(dtype).itemsize)
        step = max(1, _WIDE_BLOCK_BYTES // per_plane)

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


# Two halvings, each on long runs instead of 4 taps of OW-element rows: first across
# neighbouring columns (x as (pixels/2, 2): one flat strided run), then across neighbouring rows.
# Forward keeps which half won at each level (bools, 5/8 byte per input pixel instead of the
# input and the output), and backward routes the gradient through them.  Ties go to the left,
# then to the top, so the winner is the first maximum in row-major order, as in the general
# path; a NaN makes both row tests false, so it passes no gradient, also as there.
def halving_max(xp, x):
    """2x2 stride-2 max pooling of x (N, C, H, W), H and W even: (y (N, C, H/2, W/2), the
    winners for :func:`halving_route`)."""
    N, C, H, W = x.shape
    x = xp.ascontiguousarray(x)
    y = xp.empty((N, C, H // 2, W // 2), dtype=x.dtype)
    right = xp.empty(N * C * H * W // 2, dtype=bool)   # column level: right one won
    top = xp.empty(N * C * H * W // 4, dtype=bool)     # row level: top row won
    bottom = xp.empty(N * C * H * W // 4, dtype=bool)  # row level: bottom row won
    per_image = C * H * W

    def part(lo, hi):
        pairs = x[lo:hi].reshape(-1, 2)
        r = right[lo * per_image // 2:hi * per_image // 2]
        xp.greater(pairs[:, 1], pairs[:, 0], out=r)
        rows = xp.maximum(pairs[:, 0], pairs[:, 1]).reshape(-1, 2, W // 2)
        t, b = top[lo * per_image // 4:hi * per_image // 4], \
            bottom[lo * per_image // 4:hi * per_image // 4]
        upper, lower = rows[:, 0], rows[:, 1]
        xp.greater_equal(upper, lower, out=t.reshape(upper.shape))
        xp.greater(lower, upper, out=b.reshape(upper.shape))
        xp.maximum(upper, lower, out=y[lo:hi].reshape(upper.shape))

    parallel_for(N, part, nbytes=x.nbytes, like=x)
    return y, (x.shape, right, top, bottom)


def halving_route(xp, gy, winners, gx, add=False, images=None):
    """gx (N, C, H, W, contiguous) = each window's gradient gy (N, C, H/2, W/2) at its winner
    and 0 elsewhere, or with ``add`` gx += that.  ``images`` (lo, hi) does only those images
    (the caller splits the work); None splits them over host threads."""
    (N, C, H, W), right, top, bottom = winners
    per_image = C * H * W

    def part(lo, hi):
        g = xp.ascontiguousarray(gy[lo:hi]).reshape(-1, W // 2)
        quarter = slice(lo * per_image // 4, hi * per_image // 4)
        rows = xp.empty((g.shape[0], 2, W // 2), dtype=gy.dtype)
        xp.multiply(g, top[quarter].reshape(g.shape), out=rows[:, 0])
        xp.multiply(g, bottom[quarter].reshape(g.shape), out=rows[:, 1])
        rows = rows.reshape(-1)
        pairs = gx[lo:hi].reshape(-1, 2)
        won = right[lo * per_image // 2:hi * per_image // 2]
        if add:
            to_right = rows * won
            pairs[:, 1] += to_right
            rows -= to_right
            pairs[:, 0] += rows
        else:
            xp.multiply(rows, won, out=pairs[:, 1])
            xp.subtract(rows, pairs[:, 1], out=pairs[:, 0])  # exact: g - g or g - 0

    if images is None:
        parallel_for(N, part, nbytes=gx.nbytes, like=gx)
    else:
        part(*images)


class AvgPool2d(_Pool2d):
    where = "avg_pool2d"

    def __init__(self, kernel, stride, padding, count_include_pad=True):
        super().__init__(kernel, stride, padding)
        self.count_include_pad = count_include_pad

    def _divisor(self, xp, dtype):
        """KH*KW, or per output position the number of real (unpadded) pixels in its window."""
        KH, KW = self.kernel
        if self.count_include_pad or self.padding == (0, 0):
            return dtype.type(KH * KW)
        OH, OW = self.out_hw
        ones = self._pad(xp, xp.ones((1, 1) + tuple(self.x_shape[2:]), dtype=dtype), 0)
        count = xp.zeros((1, 1, OH, OW), dtype=dtype)
        for _, _, view in _taps(ones, KH, KW, self.stride, OH, OW):
            count += view
        return count

    def _plane_divisor(self):
        """The divisor for (planes, OH, OW) arrays: a scalar, or (OH, OW)."""
        d = self.divisor
        return d.reshape(d.shape[2:]) if getattr(d, "ndim", 0) else d

    def forward(self, x):
        xp = B.get_array_module(x)
        OH, OW = self._geometry(x)
        KH, KW = self.kernel
        self.divisor = self._divisor(xp, x.dtype)
        self.tiled = (self.stride == self.kernel and self.padding == (0, 0)
                      and x.shape[2:] == (OH * KH, OW * KW))
        if self.tiled:
            return tiled_mean(xp, x, KH, KW)
        self.wide = None
        if _WIDE_PHASES and self.stride != self.kernel and B.backend_of(x).name == "numpy":
            self.wide = WidePhases(x.shape, self.kernel, self.stride, self.padding)
            return self.wide.mean_forward(xp, x, self._plane_divisor())
        xpad = self._pad(xp, x, 0)
        taps = _taps(xpad, KH, KW, self.stride, OH, OW)
        y = next(taps)[2].copy()
        for _, _, view in taps:
            y += view
        y /= self.divisor
        return y

    def backward(self, gy):
        xp = B.get_array_module(gy)
        KH, KW = self.kernel
        OH, OW = self.out_hw
        if self.tiled:
            return tiled_spread(xp, gy, KH, KW)
        if self.wide is not None:
            return self.wide.mean_backward(xp, gy, self._plane_divisor())
        g = gy / self.divisor
        gpad = self._grad_buffer(xp, gy.dtype)
        for _, _, view in _taps(gpad, KH, KW, self.stride, OH, OW):
            view += g
        return self._crop(gpad)


# Windows that tile x exactly (stride = kernel, no padding): the mean of each window is a sum
# of the KW neighbours in every row, taken as KW strided runs over the images' whole flat data
# (not OW-element rows), then of KH such rows.  Backward writes gy / (KH*KW) into the first of
# each window's columns, then copies it across the columns and down the rows.  2x2 windows, 128
# images of 32x28x28, forward + backward on a 2-core CPU: 5.6 ms tap by tap, 2.7 ms so.
def tiled_mean(xp, x, KH, KW):
    """Mean over the KH x KW windows that tile x (N, C, KH*OH, KW*OW): (N, C, OH, OW)."""
    N, C, H, W = x.shape
    OW = W // KW
    y = xp.empty((N, C, H // KH, OW), dtype=x.dtype)
    divisor = x.dtype.type(KH * KW)

    def part(lo, hi):  # images lo:hi (in parallel on a multi-core CPU)
        cols = x[lo:hi].reshape(-1, KW)  # each row's neighbours (a copy if x is a strided view)
        t = cols[:, 0] if KW == 1 else xp.add(cols[:, 0], cols[:, 1])
        for j in range(2, KW):
            t += cols[:, j]
        rows = t.reshape(-1, KH, OW)
        out = y[lo:hi].reshape(-1, OW)
        if KH == 1:
            xp.copyto(out, rows[:, 0])
        else:
            xp.add(rows[:, 0], rows[:, 1], out=out)
        for i in range(2, KH):
            out += rows[:, i]
        out /= divisor

    parallel_for(N, part, nbytes=x.nbytes, like=x)
    return y


def tiled_spread(xp, gy, KH, KW):
    """The gradient of :func:`tiled_mean`: gy (N, C, OH, OW) / (KH*KW) over every window."""
    N, C, OH, OW = gy.shape
    gx = xp.empty((N, C, OH * KH, OW * KW), dtype=gy.dtype)
    divisor = gy.dtype.type(KH * KW)

    def part(lo, hi):  # images lo:hi (in parallel on a multi-core CPU)
        windows = gx[lo:hi].reshape(-1, KH, OW, KW)  # (n*C*OH, KH, OW, KW), a view
        first = windows[:, 0]
        xp.divide(gy[lo:hi].reshape(-1, OW), divisor, out=first[:, :, 0])
        for j in range(1, KW):
            first[:, :, j] = first[:, :, 0]
        for i in range(1, KH):
            windows[:, i] = first

    parallel_for(N, part, nbytes=gx.nbytes, like=gy)
    return gx


class GlobalAvgPool2d(Function):
    """Mean over H and W: (N, C, H, W) -> (N, C) (or (N, C, 1, 1) with keepdims)."""

    def __init__(self, keepdims=False):
        self.keepdims = keepdims

    def forward(self, x):
        self.x_shape = x.shape
        N, C, H, W = x.shape
        y = x.reshape(N, C, H * W).sum(axis=2) / x.dtype.type(H * W)
        return y.reshape(N, C, 1, 1) if self.keepdims else y

    def backward(self, gy):
        xp = B.get_array_module(gy)
        N, C, H, W = self.x_shape
        g = gy.reshape(N, C, 1, 1) / gy.dtype.type(H * W)
        return xp.broadcast_to(g, self.x_shape).copy()


# --------------------------------------------------------------------------- public wrappers

def _check_x(x, where):
    x = _as_input(x, "x", where)
    if x.ndim != 4:
        raise ValueError(f"{where}: x must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")
    if x.dtype.kind != "f":
        raise TypeError(f"{where}: x must be floating, got dtype {x.dtype}")
    return x


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """Maximum over KH x KW windows (as ``torch.nn.functional.max_pool2d``).

    Parameters
    ----------
    x : Tensor or array (N, C, H, W), floating.
    kernel_size : int or (KH, KW).
    stride : int or pair; default ``kernel_size`` (non-overlapping windows).
    padding : int or pair, at most half the kernel; the border is padded with -inf.

    Returns (N, C, OH, OW) with OH = (H + 2*pad - KH) // stride + 1.  The gradient of a window
    goes to its first maximal element (row-major), like PyTorch.

    >>> max_pool2d(x, 2).shape      # x (8, 16, 28, 28)
    (8, 16, 14, 14)
    """
    x = _check_x(x, "max_pool2d")
    kernel, stride, padding = pool_args("max_pool2d", kernel_size, stride, padding)
    _output_hw("max_pool2d", x.shape[2:], kernel, stride, padding)
    return MaxPool2d(kernel, stride, padding)(x)


def avg_pool2d(x, kernel_size, stride=None, padding=0, count_include_pad=True):
    """Mean over KH x KW windows (as ``torch.nn.functional.avg_pool2d``).

    Zero padding; with ``count_include_pad`` (default, as PyTorch) every window is divided by
    KH*KW, otherwise by the number of real pixels it covers.  Shapes as :func:`max_pool2d`.
    """
    x = _check_x(x, "avg_pool2d")
    kernel, stride, padding = pool_args("avg_pool2d", kernel_size, stride, padding)
    _output_hw("avg_pool2d", x.shape[2:], kernel, stride, padding)
    return AvgPool2d(kernel, stride, padding, bool(count_include_pad))(x)


def global_avg_pool2d(x, keepdims=False):
    """Mean over the spatial axes: (N, C, H, W) -> (N, C), or (N, C, 1, 1) with ``keepdims``."""
    x = _check_x(x, "global_avg_pool2d")
    if not isinstance(keepdims, (bool, numbers.Integral)):
        raise TypeError(f"global_avg_pool2d: keepdims must be a bool, got {keepdims!r}")
    return GlobalAvgPool2d(bool(keepdims))(x)
