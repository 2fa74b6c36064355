"""A 3x3 convolution, batch norm, optionally a ReLU, and 2x2 max pooling as one op: the whole
conv -> BN -> ReLU -> pool block of the MNIST CNN, both of its blocks.

    x (N, C, H, W), W (OC, C, 3, 3), padding p, OH = H + 2p - 2 and OW = W + 2p - 2 even
    ->  y (N, OC, OH/2, OW/2) = max_pool2d(batch_norm(conv2d(x, W, padding=p)), 2)
        (with relu: relu(y))

Winograd's F(2x2, 3x3) (:mod:`minidl.functions.winograd`) makes the convolution's output in
2x2 blocks: a chunk of n images comes out of its output transform as (2, 2, th, tw, n, OC),
th = OH/2, tw = OW/2.  Those blocks are exactly the pooling windows, so the four elements of
every window lie in four contiguous slabs (R, OC), R = th*tw*n, with the channels last.  This
op never puts the convolution's output into NCHW:

* forward, per chunk while its blocks are in cache: the chunk's per-channel mean and centred
  sum of squares (merged over the chunks as Chan et al. do: exact, no cancellation), and the
  window maxima -- three elementwise maxima of slabs, with the winners' positions.  Then batch
  norm's map is applied to the pooled quarter only, as in
  :func:`minidl.functions.batch_norm_max_pool2d` (a channel with gamma < 0 pools the minimum:
  the map reverses its order), and that quarter alone goes to NCHW.
* backward: gy (the pooled quarter) comes back to the chunk layout; batch norm's gradient
  is an affine map of the convolution's output plus k * gy at the winners, written straight
  into the 2x2 blocks that Winograd's backward takes (``blocks.gradient``).

What it saves is two NCHW <-> block layout copies of the convolution's output and batch norm
and pooling's passes over NCHW (strided pairs, a row of 7 at 14x14); their work is done on
contiguous slabs of a chunk in cache.  Values and gradients agree with the separate ops to
rounding (the statistics are summed in another order).

Layers too small for Winograd, where conv2d takes one product per image (the 1 -> 32 first
layer of a grayscale network), take :class:`ImageConvBatchNormMaxPool` instead: im2col lists
the output positions window by window, so each image's product already has the four slabs
(OC, 4, R), and the pooled quarter comes out in NCHW.

Host (NumPy) only, like the two conv2d paths it extends; elsewhere, and for layers on
neither path, :func:`conv2d_batch_norm_max_pool2d` runs the separate ops.
"""
from __future__ import annotations

from minidl import backend as B
from minidl.autograd import Function, is_grad_enabled
from minidl.functions.activation import relu_into
from minidl.functions.batchnorm_pool import batch_norm_max_pool2d
from minidl.functions.arguments import as_input as _as_input, output_hw as _output_hw, pair as _pair
from minidl.functions.conv import conv2d
from minidl.kernels import kernels as _kernels, tuning
from minidl.kernels.geometry import ConvGeometry
from minidl.kernels.host.conv_common import WORKSPACE as _workspace, ColumnPlan
from minidl.kernels.host.conv_layout import ColumnLayout
from minidl.functions.normalization import (_by_parts, _channel_dot, _channel_sum,
                                            _checked_args, update_running)
from minidl.kernels.host.winograd import Winograd3x3
from minidl.parallel import chunks_side_by_side, even_chunk_size, parallel_for, sum_in_order

__all__ = ["conv2d_batch_norm_max_pool2d"]

# Chunk and block sizes: tuning.FUSED_WINOGRAD_CHUNK_BYTES, FUSED_IMAGE_BLOCK_BYTES (their
# measurements are in docs/design/conv.md).


class _ConvBatchNormPool(Function):
    """What the two paths share: the arguments, batch norm's map from the chunks' or blocks'
    statistics, and the constants of its gradient."""

    fresh_grads = True  # gx, gW and the two sums are made anew by each backward

    def __init__(self, padding, running_mean, running_var, training, momentum, eps, relu,
                 recorded, keep_for_W):
        # recorded: a backward may come; keep_for_W: W needs a gradient, so keep what its
        # product needs (Winograd's transformed tiles, im2col's columns), as conv2d does
        self.padding, self.recorded, self.keep_for_W = padding, recorded, keep_for_W
        self.running_mean, self.running_var = running_mean, running_var
        self.training, self.momentum, self.eps, self.relu = training, momentum, eps, relu

    def _normalising_map(self, xp, parts, count, gamma, dt):
        """Sets mean, inv_std and scale (gamma * inv_std, or inv_std) from the parts'
        statistics (training: merged, and the running ones updated with them over ``count``
        values) or from the running ones (evaluation)."""
        if self.training:
            mean, var = _merged_statistics(parts)
            update_running(self.running_mean, self.running_var, mean, var, count,
                           self.momentum)
        else:
            mean, var = self.running_mean.astype(dt), self.running_var.astype(dt)
        self.inv_std = 1 / xp.sqrt(var + dt.type(self.eps))
        self.scale = self.inv_std if gamma is None else gamma * self.inv_std
        self.mean, self.has_affine = mean, gamma is not None

    def _gradient_map(self, sum_gy, sum_gy_xhat, count):
        """(c1, c0) with the convolution's gradient (Y * c1 + c0, plus k * gy at the winners)
        in training, per channel, from batch norm's sums over ``count`` values."""
        c1 = -self.scale * self.inv_std * sum_gy_xhat / count
        return c1, -self.scale * sum_gy / count - self.mean * c1


class ConvBatchNormMaxPool(_ConvBatchNormPool):
    """y = max_pool2d(batch_norm(conv2d(x, W, padding)), 2) [relu]; see the module docstring.
    Its ``slot``, ``done`` and ``gradient`` are the output blocks' side of
    :class:`minidl.functions.winograd.Winograd3x3` (its ``blocks`` argument)."""

    # -- forward ------------------------------------------------------------------------------
    def forward(self, x, W, gamma=None, beta=None):
        xp = B.get_array_module(x)
        N, C, H, Wd = x.shape
        OC = W.shape[0]
        dt = x.dtype
        self.wino = wino = Winograd3x3(x.shape, W.shape, self.padding, dt, _workspace,
                                       chunk_bytes=tuning.FUSED_WINOGRAD_CHUNK_BYTES)
        th, tw = wino.geom.th, wino.geom.tw
        self.quarter = th * tw           # pooled values per image and channel
        self.chunks = wino.chunks
        self.Y = _workspace.take(xp, 4 * OC * N * self.quarter, dt)   # the conv's blocks
        self.pooled = xp.empty(N * self.quarter * OC, dtype=dt)
        # the winners: the right one of the top pair, of the bottom pair; the bottom pair
        self.right_top, self.right_bottom, self.bottom = (
            xp.empty(N * self.quarter * OC, dtype=bool) for _ in range(3))
        self.flip = None   # (OC,) +-1 when some channel pools the minimum (gamma < 0)
        if gamma is not None and bool(B.to_host(xp.any(gamma < 0))):
            self.flip = xp.where(gamma < 0, -1, 1).astype(dt)
        self.parts = [None] * len(self.chunks)   # per chunk: (count, mean, centred sum of squares)
        keep_V = self.keep_for_W and wino.V_bytes() <= tuning.CONV_KEEP_COL_BYTES
        wino.forward(xp, x, W, None, keep_V=keep_V, keep_U=self.recorded, blocks=self)

        self._normalising_map(xp, self.parts, N * th * tw * 4, gamma, dt)
        mean, scale = self.mean, self.scale
        self.positive = xp.empty(N * self.quarter * OC, dtype=bool) if self.relu else None
        y = xp.empty((N, OC, th, tw), dtype=dt)

        def normalise(k):   # the pooled quarter: centred (kept for backward), mapped, to NCHW
            n0, n1 = self.chunks[k]
            c = self._quarter(self.pooled, k)
            c -= mean
            z = _workspace.take(xp, c.shape, dt)
            xp.multiply(c, scale, out=z)
            if beta is not None:
                z += beta
            if self.relu:
                xp.greater(z, 0, out=self._quarter(self.positive, k))
                relu_into(z, z)
            xp.copyto(y[n0:n1], z.reshape(th, tw, n1 - n0, OC).transpose(2, 3, 0, 1))
            _workspace.give(z)

        chunks_side_by_side(len(self.chunks), normalise, nbytes=y.nbytes, like=y)
        self.centred = self.pooled
        self.pooled = None
        if not self.recorded:
            self._release_buffers()
        return y

    def slot(self, k):
        """Where chunk k's output blocks go: its part of the kept Y, 4*OC*R elements."""
        n0, n1 = self.chunks[k]
        per_image = 4 * self.quarter * self.wino.geom.OC
        return self.Y[per_image * n0:per_image * n1]

    def done(self, k, yt):
        """Chunk k's blocks yt (2, 2, th, tw, n, OC), in cache: its statistics and the window
        maxima (minima where gamma < 0) with their winners."""
        xp = B.get_array_module(yt)
        OC = yt.shape[-1]
        slabs = yt.reshape(4, -1, OC)     # (4, R, OC): the four places of every window
        R = slabs.shape[1]
        if self.training:
            self.parts[k] = _moments(xp, yt.reshape(1, 4 * R, OC), channel_axis=2)
        _pool_windows(xp, slabs, self.flip, self._quarter(self.pooled, k),
                      self._quarter(self.right_top, k), self._quarter(self.right_bottom, k),
                      self._quarter(self.bottom, k))

    def _quarter(self, flat, k):
        """Chunk k's (R, OC) part of a per-window array kept chunk after chunk."""
        n0, n1 = self.chunks[k]
        OC = self.wino.geom.OC
        per_image = self.quarter * OC
        return flat[per_image * n0:per_image * n1].reshape(-1, OC)

    # -- backward -----------------------------------------------------------------------------
    def backward(self, gy):
        xp = B.get_array_module(gy)
        N, OC, th, tw = gy.shape
        dt = gy.dtype
        need_x, need_W = self.inputs[0].requires_grad, self.inputs[1].requires_grad
        # gy in the chunks' (th, tw, n, OC) layout, through the ReLU; per chunk sums
        self.g = xp.empty(N * self.quarter * OC, dtype=dt)
        sums = [None] * len(self.chunks)

        def gather(k):
            n0, n1 = self.chunks[k]
            g = self._quarter(self.g, k)
            xp.copyto(g.reshape(th, tw, n1 - n0, OC), gy[n0:n1].transpose(2, 3, 0, 1))
            if self.relu:
                g *= self._quarter(self.positive, k)
            ones = xp.ones(g.shape[0], dtype=dt)
            t = _workspace.take(xp, g.shape, dt)
            xp.multiply(g, self._quarter(self.centred, k), out=t)
            sums[k] = (xp.matmul(ones, g), xp.matmul(ones, t))
            _workspace.give(t)

        chunks_side_by_side(len(self.chunks), gather, nbytes=gy.nbytes, like=gy)
        sum_gy = sum_in_order([s[0] for s in sums])
        sum_gy_xhat = sum_in_order([s[1] for s in sums]) * self.inv_std
        if self.training:
            self.c1, self.c0 = self._gradient_map(sum_gy, sum_gy_xhat, dt.type(N * th * tw * 4))
        gx, gW, _ = self.wino.backward(xp, None, self.inputs[0].data, need_x, need_W, False,
                                       blocks=self)
        self._release_buffers()
        if self.has_affine:
            return gx, gW, sum_gy_xhat, sum_gy
        return gx, gW

    def gradient(self, k, out):
        """The convolution's gradient for chunk k in 2x2 blocks, written into out (2, 2, th,
        tw, n, OC): batch norm's affine map of the kept blocks Y (training; 0 in evaluation)
        plus k * gy routed to each window's winner."""
        xp = B.get_array_module(out)
        OC = out.shape[-1]
        slabs = out.reshape(4, -1, OC)
        R, dt = slabs.shape[1], out.dtype
        if self.training:
            xp.multiply(self.slot(k).reshape(4, R, OC), self.c1, out=slabs)
            slabs += self.c0
        else:
            slabs[...] = 0
        g = _workspace.take(xp, (R, OC), dt)
        xp.multiply(self._quarter(self.g, k), self.scale, out=g)
        _route_to_winners(xp, g, slabs, self._quarter(self.right_top, k),
                          self._quarter(self.right_bottom, k), self._quarter(self.bottom, k))
        _workspace.give(g)
        return out

    def _release_buffers(self):
        _workspace.give(self.Y)
        self.Y = self.centred = self.g = self.right_top = self.right_bottom = self.bottom = None
        self.positive = None
        self.wino.release()


class ImageConvBatchNormMaxPool(_ConvBatchNormPool):
    """The same op as :class:`ConvBatchNormMaxPool` for layers so small that conv2d takes one
    product per image (a grayscale network's first conv, 1 -> 32 channels): im2col puts the
    output positions in pooling-window order -- (a, b, i, j) for output (2i + a, 2j + b) -- so
    each image's product W (OC, C*9) @ col (C*9, 4*R) comes out as (OC, 4, R), the four places
    of every window as four runs of R = OH/2 * OW/2 per channel, and the pooled quarter (OC,
    R) is the output's NCHW image as it stands.  Blocks of a few images run in parallel, each
    in cache from its product to its window maxima (forward) and from batch norm's gradient
    to its weight gradient product (backward)."""

    def forward(self, x, W, gamma=None, beta=None):
        xp = B.get_array_module(x)
        N, C, H, Wd = x.shape
        OC, dt = W.shape[0], x.dtype
        (ph, pw) = self.padding
        OH, OW = H + 2 * ph - 2, Wd + 2 * pw - 2
        th, tw = OH // 2, OW // 2
        R, K = th * tw, C * 9
        g = ConvGeometry(N, C, H, Wd, OC, 3, 3, (1, 1), tuple(self.padding), (1, 1), 1, dt,
                         B.backend_of(x).name)
        self.layout = ColumnLayout(ColumnPlan(g, False, OW, N, per_image=True), _workspace)
        self.buf = self.layout.padded(xp, x)
        # (N, K, 4R) per image, the output positions in window order
        self.windows = self.layout.windows(xp, self.buf).reshape(
            C * 9, N, th, 2, tw, 2).transpose(1, 0, 3, 5, 2, 4)
        per_block = even_chunk_size(
            N, max(1, tuning.FUSED_IMAGE_BLOCK_BYTES // (OC * 4 * R * dt.itemsize)))
        self.blocks = [(b0, min(N, b0 + per_block)) for b0 in range(0, N, per_block)]
        self.cols = _workspace.take(xp, (N, K, 4 * R), dt) if self.keep_for_W else None
        self.Y = _workspace.take(xp, (N, OC, 4 * R), dt)
        pooled = xp.empty((N, OC, R), dtype=dt)
        self.right_top, self.right_bottom, self.bottom = (
            xp.empty((N, OC, R), dtype=bool) for _ in range(3))
        flip = None
        if gamma is not None and bool(B.to_host(xp.any(gamma < 0))):
            flip = xp.where(gamma < 0, -1, 1).astype(dt)[:, None]
        W2 = W.reshape(OC, K)
        parts = [None] * len(self.blocks)

        def block(k):
            b0, b1 = self.blocks[k]
            col, scratch = self._col(xp, b0, b1, forward=True)
            Y3 = self.Y[b0:b1]
            xp.matmul(W2, col, out=Y3)
            _workspace.give(scratch)
            if self.training:
                parts[k] = _moments(xp, Y3, channel_axis=1)
            _pool_windows(xp, self._slabs(Y3), flip, pooled[b0:b1], self.right_top[b0:b1],
                          self.right_bottom[b0:b1], self.bottom[b0:b1])

        self._each_block(block, nbytes=self.Y.nbytes, like=x)
        if self.cols is not None or not self.recorded:
            _workspace.give(self.buf)
            self.buf = self.windows = None

        self._normalising_map(xp, parts, N * OH * OW, gamma, dt)
        mean, scale = self.mean, self.scale
        self.positive = xp.empty((N, OC, R), dtype=bool) if self.relu else None
        y = xp.empty((N, OC, R), dtype=dt)

        def normalise(lo, hi):   # the pooled quarter: centred (kept for backward), mapped
            c = pooled[lo:hi]
            c -= mean[:, None]
            xp.multiply(c, scale[:, None], out=y[lo:hi])
            if beta is not None:
                y[lo:hi] += beta[:, None]
            if self.relu:
                xp.greater(y[lo:hi], 0, out=self.positive[lo:hi])
                relu_into(y[lo:hi], y[lo:hi])

        parallel_for(N, normalise, nbytes=y.nbytes, like=y)
        self.centred = pooled
        if not self.recorded:
            self._release_buffers()
        return y.reshape(N, OC, th, tw)

    def _col(self, xp, b0, b1, forward):
        """(col (n, K, 4R) of images b0:b1, a scratch buffer to give back or None): in
        forward, the kept column matrices' slot filled, or a scratch copy; in backward, the
        slot kept from forward, or a scratch copy made again from the padded input."""
        if self.cols is not None and not forward:
            return self.cols[b0:b1], None
        shape = (b1 - b0, self.windows.shape[1], self.Y.shape[2])
        scratch = None if self.cols is not None else _workspace.take(xp, shape, self.Y.dtype)
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

    def backward(self, gy):
        xp = B.get_array_module(gy)
        N, OC, th, tw = gy.shape
        R, dt = th * tw, gy.dtype
        need_x, need_W = self.inputs[0].requires_grad, self.inputs[1].requires_grad
        g = gy.reshape(N, OC, R) * self.positive if self.relu else \
            xp.ascontiguousarray(gy.reshape(N, OC, R))
        c3 = self.centred
        sum_gy, sum_gy_xc = _by_parts(xp, g, lambda lo, hi: (
            _channel_sum(xp, g[lo:hi]), _channel_dot(xp, g[lo:hi], c3[lo:hi])))
        sum_gy_xhat = sum_gy_xc * self.inv_std
        scale = self.scale
        if self.training:
            c1, c0 = (c[:, None] for c in self._gradient_map(sum_gy, sum_gy_xhat,
                                                               dt.type(N * R * 4)))
        W2t = self.inputs[1].data.reshape(OC, -1).T
        gx = xp.empty(self.inputs[0].shape, dtype=dt) if need_x else None
        gW_parts = [None] * len(self.blocks)

        def block(k):
            b0, b1 = self.blocks[k]
            n = b1 - b0
            gyt = _workspace.take(xp, (n, OC, 4 * R), dt)   # the conv's gradient
            if self.training:
                xp.multiply(self.Y[b0:b1], c1, out=gyt)
                gyt += c0
            else:
                gyt.fill(0)
            routed = _workspace.take(xp, (n, OC, R), dt)
            xp.multiply(g[b0:b1], scale[:, None], out=routed)
            _route_to_winners(xp, routed, self._slabs(gyt), self.right_top[b0:b1],
                              self.right_bottom[b0:b1], self.bottom[b0:b1])
            _workspace.give(routed)
            if need_W:
                col, scratch = self._col(xp, b0, b1, forward=False)
                gW_parts[k] = xp.matmul(gyt, col.transpose(0, 2, 1)).sum(axis=0)
                _workspace.give(scratch)
            if need_x:
                self._input_gradient(xp, W2t, gyt, gx[b0:b1])
            _workspace.give(gyt)

        self._each_block(block, nbytes=self.Y.nbytes, like=gy)
        gW = sum_in_order(gW_parts).reshape(self.inputs[1].shape) if need_W else None
        self._release_buffers()
        if self.has_affine:
            return gx, gW, sum_gy_xhat, sum_gy
        return gx, gW

    def _input_gradient(self, xp, W2t, gyt, gx):
        """gx (n, C, H, W) from the conv's gradient gyt (n, OC, 4R) in window order: the column
        gradients W^T @ gyt put back in (OH, OW) order, then col2im."""
        n, K = gyt.shape[0], W2t.shape[0]
        g = self.layout.g
        C, KH, KW, OH, OW = g.C, g.KH, g.KW, g.OH, g.OW
        th, tw = OH // 2, OW // 2
        gcol = _workspace.take(xp, (n, K, 4 * th * tw), gyt.dtype)
        xp.matmul(W2t, gyt, out=gcol)
        ordered = _workspace.take(xp, (n, K, th, 2, tw, 2), gyt.dtype)
        xp.copyto(ordered, gcol.reshape(n, K, 2, 2, th, tw).transpose(0, 1, 4, 2, 5, 3))
        gpad = _workspace.take(xp, self.layout.gpad_size(n), gyt.dtype)
        # (n, C, KH, KW, OH, OW) seen as col2im's (C, KH, KW, n, OH, OW): a view
        self.layout.col2im(xp, ordered.reshape(n, C, KH, KW, OH, OW).transpose(1, 2, 3, 0, 4, 5),
                           n, gpad, gx)
        _workspace.give(gcol, ordered, gpad)

    def _release_buffers(self):
        _workspace.give(self.Y, self.cols, self.buf)
        self.Y = self.cols = self.buf = self.windows = self.centred = None
        self.right_top = self.right_bottom = self.bottom = self.positive = None


def _moments(xp, a3, channel_axis):
    """(count, mean, centred sum of squares) per channel of a block a3: (n, C, L) with
    channel_axis 1, or (n, L, C) with channel_axis 2, summed over the other two axes (matrix-vector
    products with ones, the centred copy a scratch array)."""
    dt, L = a3.dtype, a3.shape[2 if channel_axis == 1 else 1]
    count = a3.shape[0] * L
    ones = xp.ones(L, dtype=dt)

    def channel_sums(a):
        per_image = xp.matmul(a, ones) if channel_axis == 1 else xp.matmul(ones, a)
        return per_image.sum(axis=0)

    mean = channel_sums(a3) / dt.type(count)
    d = _workspace.take(xp, a3.shape, dt)
    xp.subtract(a3, mean[:, None] if channel_axis == 1 else mean, out=d)
    xp.multiply(d, d, out=d)
    m2 = channel_sums(d)
    _workspace.give(d)
    return count, mean, m2


def _merged_statistics(parts):
    """(mean, biased variance) of the whole batch from each block's (count, mean, centred sum
    of squares), merged in order (Chan, Golub & LeVeque): the blocks' sums of squares about
    their own means, plus each block's count times its mean's squared distance from the batch
    mean."""
    dt = parts[0][1].dtype
    total = sum(c for c, _, _ in parts)
    mean = sum_in_order([m * dt.type(c) for c, m, _ in parts]) / dt.type(total)
    m2 = sum_in_order([s + dt.type(c) * (m - mean) ** 2 for c, m, s in parts])
    return mean, m2 / dt.type(total)


def _pool_windows(xp, slabs, flip, pooled, right_top, right_bottom, bottom):
    """pooled = each window's maximum over the four slabs (4, ...) -- its places (0, 0), (0, 1),
    (1, 0), (1, 1) -- or its minimum where flip (broadcast to a slab) is -1, and the first
    winner in that order: right_top (the right one of the top pair won it), right_bottom,
    bottom (the bottom pair won).  The outputs are slab-shaped."""
    flipped = None
    if flip is not None:
        flipped = _workspace.take(xp, slabs.shape, slabs.dtype)
        xp.multiply(slabs, flip, out=flipped)
        slabs = flipped
    top = _workspace.take(xp, pooled.shape, pooled.dtype)
    low = _workspace.take(xp, pooled.shape, pooled.dtype)
    xp.greater(slabs[1], slabs[0], out=right_top)
    xp.maximum(slabs[0], slabs[1], out=top)
    xp.greater(slabs[3], slabs[2], out=right_bottom)
    xp.maximum(slabs[2], slabs[3], out=low)
    xp.greater(low, top, out=bottom)
    xp.maximum(top, low, out=pooled)
    if flip is not None:
        pooled *= flip
    _workspace.give(top, low, flipped)


def _route_to_winners(xp, g, slabs, right_top, right_bottom, bottom):
    """slabs (4, ...) += g (slab-shaped, overwritten) at each window's winner, as
    :func:`_pool_windows` recorded it."""
    low = _workspace.take(xp, g.shape, g.dtype)
    part = _workspace.take(xp, g.shape, g.dtype)
    xp.multiply(g, bottom, out=low)
    g -= low                                    # the top pair's: exact, g - g or g - 0
    for pair, (left, right), won in ((g, (0, 1), right_top), (low, (2, 3), right_bottom)):
        xp.multiply(pair, won, out=part)
        slabs[right] += part
        pair -= part
        slabs[left] += pair
    _workspace.give(low, part)


def conv2d_batch_norm_max_pool2d(x, W, running_mean=None, running_var=None, gamma=None,
                                 beta=None, padding=1, training=False, momentum=0.1, eps=1e-5,
                                 relu=False):
    """``max_pool2d(batch_norm(conv2d(x, W, padding=padding), ...), 2)``, with ``relu``
    followed by a ReLU, for a 3x3 kernel W (OC, C, 3, 3), stride 1, no bias, and an even
    output size.  One op (:class:`ConvBatchNormMaxPool`) where conv2d would take Winograd on
    the host; the separate ops (:func:`conv2d`, then
    :func:`minidl.functions.batch_norm_max_pool2d`) elsewhere.

    The batch norm arguments are :func:`minidl.functions.batch_norm`'s.  Values, running
    statistics and gradients agree with the separate ops to rounding; a window's gradient goes
    to its first maximal element, as in max_pool2d (except where rounding ties differ).

    Returns a Tensor (N, OC, OH/2, OW/2) of x's dtype.
    """
    where = "conv2d_batch_norm_max_pool2d"
    x, W = _as_input(x, "x", where), _as_input(W, "W", where)
    padding = _pair(padding, "padding", where, 0)
    if x.ndim != 4:
        raise ValueError(f"{where}: x must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")
    if W.ndim != 4 or W.shape[2:] != (3, 3) or W.shape[1] != x.shape[1]:
        raise ValueError(f"{where}: W must be (OC, {x.shape[1]}, 3, 3) for x with "
                         f"{x.shape[1]} channels, got shape {tuple(W.shape)}")
    if x.dtype.kind != "f" or W.dtype != x.dtype:
        raise TypeError(f"{where}: x and W must have the same floating dtype, got "
                        f"{x.dtype} and {W.dtype}")
    OH, OW = _output_hw(where, x.shape[2:], (3, 3), (1, 1), padding)
    if OH % 2 or OW % 2:
        raise ValueError(f"{where}: the convolution's output must have an even height and "
                         f"width (2x2 windows, stride 2), got {OH}x{OW} from input "
                         f"{x.shape[2]}x{x.shape[3]} with padding {padding}")
    OC = W.shape[0]
    # batch norm's checks, against a stand-in for the convolution's output (no memory)
    xp = B.get_array_module(x.data)
    conv_out = xp.broadcast_to(xp.zeros((), dtype=x.dtype), (x.shape[0], OC, OH, OW))
    _, stats, affine = _checked_args(where, conv_out, running_mean, running_var, gamma, beta,
                                     training, momentum, eps)
    path = fused_path(B.backend_of(x.data).name, x.shape[1], OC, OH, OW)
    if path is None:
        return batch_norm_max_pool2d(conv2d(x, W, padding=padding), running_mean, running_var,
                                     gamma, beta, training=training, momentum=momentum, eps=eps,
                                     relu=relu)
    inputs = [x, W] + ([affine[0], affine[1]] if affine[0] is not None else [])
    recorded = is_grad_enabled() and any(getattr(t, "requires_grad", False) for t in inputs)
    op = ConvBatchNormMaxPool if path == "winograd" else ImageConvBatchNormMaxPool
    fn = op(padding, stats[0], stats[1], bool(training), float(momentum), float(eps),
            bool(relu), recorded, keep_for_W=recorded and W.requires_grad)
    return fn(*inputs)


def fused_path(backend: str, C: int, OC: int, OH: int, OW: int) -> str | None:
    """Which op :func:`conv2d_batch_norm_max_pool2d` runs for a 3x3 stride-1 conv of C -> OC
    channels with an (OH, OW) output (even): "winograd" (:class:`ConvBatchNormMaxPool`) where
    conv2d would take Winograd, "per image" (:class:`ImageConvBatchNormMaxPool`) where it
    would take one product per image, both on the host; None (the separate ops) otherwise."""
    g = ConvGeometry(1, C, OH, OW, OC, 3, 3, padding=(1, 1), backend=backend)
    verdicts = {k.name: k.verdict(g)[0] for k in _kernels("conv2d")}
    if verdicts["per_image"]:   # it excludes Winograd in conv2d (a higher priority)
        return "per image"
    if verdicts["winograd"]:
        return "winograd"
    return None
