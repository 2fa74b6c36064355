"""A 3x3 convolution, batch norm, optionally a ReLU, and 2x2 max pooling as one op: the whole
conv -> BN -> ReLU -> pool block of the MNIST CNN, where the convolution goes through Winograd.

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

Host (NumPy) only, like the Winograd path it extends; elsewhere, and where conv2d would not
take Winograd for this layer, :func:`conv2d_batch_norm_max_pool2d` runs the separate ops.
"""
from __future__ import annotations

from minidl import backend as B
from minidl.autograd import Function, is_grad_enabled
from minidl.functions.activation import relu_into
from minidl.functions.batchnorm_pool import batch_norm_max_pool2d
from minidl.functions.conv import (_KEEP_COL_BYTES, _as_input, _output_hw, _pair, _workspace,
                                   conv2d, takes_winograd)
from minidl.functions.normalization import _checked_args, update_running
from minidl.functions.winograd import Winograd3x3
from minidl.parallel import chunks_side_by_side, sum_in_order

__all__ = ["conv2d_batch_norm_max_pool2d"]


class ConvBatchNormMaxPool(Function):
    """y = max_pool2d(batch_norm(conv2d(x, W, padding)), 2) [relu]; see the module docstring.
    Its ``slot``, ``done`` and ``gradient`` are the output blocks' side of
    :class:`minidl.functions.winograd.Winograd3x3` (its ``blocks`` argument)."""

    def __init__(self, padding, running_mean, running_var, training, momentum, eps, relu,
                 recorded, keep_V):
        # recorded: a backward may come; keep_V: W needs a gradient, so keep Winograd's
        # transformed input tiles for it (as conv2d's keep_col)
        self.padding, self.recorded, self.keep_V = padding, recorded, keep_V
        self.running_mean, self.running_var = running_mean, running_var
        self.training, self.momentum, self.eps, self.relu = training, momentum, eps, relu

    # -- forward ------------------------------------------------------------------------------
    def forward(self, x, W, gamma=None, beta=None):
        xp = B.get_array_module(x)
        N, C, H, Wd = x.shape
        OC = W.shape[0]
        dt = x.dtype
        self.wino = wino = Winograd3x3(x.shape, W.shape, self.padding, dt, _workspace)
        th, tw = wino.geom[9:11]
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
        self.parts = [None] * len(self.chunks)   # each chunk's (mean, centred sum of squares)
        keep_V = self.keep_V and wino.V_bytes() <= _KEEP_COL_BYTES
        wino.forward(xp, x, W, None, keep_V=keep_V, keep_U=self.recorded, blocks=self)

        count = N * th * tw * 4
        if self.training:
            mean, var = _merged_statistics(xp, self.parts, [4 * self.quarter * (n1 - n0)
                                                            for n0, n1 in self.chunks])
            update_running(self.running_mean, self.running_var, mean, var, count,
                           self.momentum)
        else:
            mean, var = self.running_mean.astype(dt), self.running_var.astype(dt)
        inv_std = 1 / xp.sqrt(var + dt.type(self.eps))
        scale = inv_std if gamma is None else gamma * inv_std
        self.mean, self.inv_std, self.scale = mean, inv_std, scale
        self.has_affine = gamma is not None
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
        per_image = 4 * self.quarter * self.wino.geom[4]
        return self.Y[per_image * n0:per_image * n1]

    def done(self, k, yt):
        """Chunk k's blocks yt (2, 2, th, tw, n, OC), in cache: its statistics and the window
        maxima (minima where gamma < 0) with their winners."""
        xp = B.get_array_module(yt)
        OC = yt.shape[-1]
        slabs = yt.reshape(4, -1, OC)     # (4, R, OC): the four places of every window
        R, dt = slabs.shape[1], yt.dtype
        if self.training:
            flat = yt.reshape(4 * R, OC)
            ones = xp.ones(4 * R, dtype=dt)
            mean = xp.matmul(ones, flat) / dt.type(4 * R)
            d = _workspace.take(xp, flat.shape, dt)
            xp.subtract(flat, mean, out=d)
            xp.multiply(d, d, out=d)
            self.parts[k] = (mean, xp.matmul(ones, d))
            _workspace.give(d)
        flipped = None
        if self.flip is not None:
            flipped = _workspace.take(xp, slabs.shape, dt)
            xp.multiply(slabs, self.flip, out=flipped)
            slabs = flipped
        top = _workspace.take(xp, (R, OC), dt)
        low = _workspace.take(xp, (R, OC), dt)
        xp.greater(slabs[1], slabs[0], out=self._quarter(self.right_top, k))
        xp.maximum(slabs[0], slabs[1], out=top)
        xp.greater(slabs[3], slabs[2], out=self._quarter(self.right_bottom, k))
        xp.maximum(slabs[2], slabs[3], out=low)
        xp.greater(low, top, out=self._quarter(self.bottom, k))
        pooled = self._quarter(self.pooled, k)
        xp.maximum(top, low, out=pooled)
        if self.flip is not None:
            pooled *= self.flip
        _workspace.give(top, low, flipped)

    def _quarter(self, flat, k):
        """Chunk k's (R, OC) part of a per-window array kept chunk after chunk."""
        n0, n1 = self.chunks[k]
        OC = self.wino.geom[4]
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
        scale = self.scale
        if self.training:
            M = dt.type(N * th * tw * 4)
            # the conv's gradient: (Y - mean) * c1 + c0, plus k * gy at the winners
            self.c1 = -scale * self.inv_std * sum_gy_xhat / M
            self.c0 = -scale * sum_gy / M - self.mean * self.c1
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
        low = _workspace.take(xp, (R, OC), dt)   # k * gy, split: bottom pair, then top pair
        top = _workspace.take(xp, (R, OC), dt)
        part = _workspace.take(xp, (R, OC), dt)
        xp.multiply(self._quarter(self.g, k), self.scale, out=top)
        xp.multiply(top, self._quarter(self.bottom, k), out=low)
        top -= low                                  # exact: g - g or g - 0
        for pair, (left, right) in ((top, (0, 1)), (low, (2, 3))):
            won = self._quarter(self.right_top if left == 0 else self.right_bottom, k)
            xp.multiply(pair, won, out=part)
            slabs[right] += part
            pair -= part
            slabs[left] += pair
        _workspace.give(low, top, part)
        return out

    def _release_buffers(self):
        _workspace.give(self.Y)
        self.Y = self.centred = self.g = self.right_top = self.right_bottom = self.bottom = None
        self.positive = None
        self.wino.release()


def _merged_statistics(xp, parts, counts):
    """(mean, biased variance) of the whole batch from each chunk's (mean, centred sum of
    squares) and element count, merged in order (Chan, Golub & LeVeque): the chunks' sums of
    squares about their own means, plus each chunk's count times its mean's squared distance
    from the batch mean."""
    total = sum(counts)
    dt = parts[0][0].dtype
    mean = sum_in_order([m * dt.type(c) for (m, _), c in zip(parts, counts)]) / dt.type(total)
    m2 = sum_in_order([s + dt.type(c) * (m - mean) ** 2 for (m, s), c in zip(parts, counts)])
    return mean, m2 / dt.type(total)


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
    if not takes_winograd(B.backend_of(x.data).name, x.shape[1], OC, (3, 3), OH, OW):
        return batch_norm_max_pool2d(conv2d(x, W, padding=padding), running_mean, running_var,
                                     gamma, beta, training=training, momentum=momentum, eps=eps,
                                     relu=relu)
    inputs = [x, W] + ([affine[0], affine[1]] if affine[0] is not None else [])
    recorded = is_grad_enabled() and any(getattr(t, "requires_grad", False) for t in inputs)
    fn = ConvBatchNormMaxPool(padding, stats[0], stats[1], bool(training), float(momentum),
                              float(eps), bool(relu), recorded, recorded and W.requires_grad)
    return fn(*inputs)
