"""A 3x3 convolution, batch norm, optionally a ReLU, and 2x2 max pooling as one op: the whole
conv -> BN -> ReLU -> pool block of the MNIST CNN, both of its blocks.

    x (N, C, H, W), W (OC, C, 3, 3), padding p, OH = H + 2p - 2 and OW = W + 2p - 2 even
    ->  y (N, OC, OH/2, OW/2) = max_pool2d(batch_norm(conv2d(x, W, padding=p)), 2)
        (with relu: relu(y))

Its two host kernels work on the convolution's output in pooling-window order and never put it
into NCHW: :mod:`minidl.kernels.host.fused_conv_bn_pool_winograd` (Winograd's 2x2 output
blocks, where conv2d would take Winograd) and
:mod:`minidl.kernels.host.fused_conv_bn_pool_per_image` (one product per image with the output
positions listed window by window, where conv2d would take one product per image), registered
as the kernels "winograd" and "per_image" of op "conv2d_batch_norm_max_pool2d", whose
reference is the separate ops.  Each makes the convolution's per-channel statistics (merged as
Chan et al. do: exact, no cancellation) and the window maxima with their winners; this module
then applies batch norm's map to the pooled quarter only, as
:func:`minidl.functions.batch_norm_max_pool2d` does (a channel with gamma < 0 pools the
minimum: the map reverses its order; one with gamma == 0 takes each window's first element:
the map makes the window's four values equal, and max pooling takes the first of equals),
and in backward gives the kernel batch norm's gradient as an affine map of the convolution's
output plus k * gy at the winners.  Values and gradients
agree with the separate ops to rounding (the statistics are summed in another order).

Elsewhere (other backends, layers on neither path) :func:`conv2d_batch_norm_max_pool2d` runs
the separate ops.
"""
from __future__ import annotations

from minidl import backend as B
from minidl.autograd import Function, is_grad_enabled
from minidl.functions.activation import relu_into
from minidl.functions.batchnorm_pool import batch_norm_max_pool2d
from minidl.functions.arguments import as_input as _as_input, output_hw as _output_hw, pair as _pair
from minidl.functions.conv import conv2d
from minidl import kernels
from minidl.kernels.geometry import ConvGeometry
from minidl.kernels.host.conv_common import WORKSPACE as _workspace
from minidl.kernels.host.fused_conv_bn_pool_common import merged_statistics
from minidl.functions.normalization import checked_args as _checked_args, update_running
from minidl.kernels.host.bn_stats import (by_parts as _by_parts, channel_dot as _channel_dot,
                                          channel_sum as _channel_sum)
from minidl.parallel import chunks_side_by_side, parallel_for, sum_in_order

__all__ = ["conv2d_batch_norm_max_pool2d"]



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
            mean, var = merged_statistics(parts)
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


    def _release_buffers(self):
        if getattr(self, "run", None) is not None:
            self.run.release()
        self.run = self.centred = self.positive = None

    def release(self) -> None:
        """The kernel's kept blocks go back to the workspace when autograd frees the graph
        (right after backward unless ``retain_graph``), not inside backward: a second
        backward reads them again."""
        self._release_buffers()
        super().release()

    def _flip(self, xp, gamma, dt):
        """(OC,) sign of gamma where some channel has gamma <= 0, else None (all positive: the
        common case pools as it is).  -1 pools the minimum (the map reverses the order); 0
        (the map sends the window to four equal values) takes each window's first element,
        as max pooling does with ties."""
        if gamma is not None and bool(B.to_host(xp.any(gamma <= 0))):
            return xp.sign(gamma).astype(dt)
        return None


class ConvBatchNormMaxPool(_ConvBatchNormPool):
    """y = max_pool2d(batch_norm(conv2d(x, W, padding)), 2) [relu] through Winograd's 2x2
    output blocks (:class:`minidl.kernels.host.fused_conv_bn_pool_winograd.WinogradBlocksPool`)."""

    def forward(self, x, W, gamma=None, beta=None):
        xp = B.get_array_module(x)
        N, OC, dt = x.shape[0], W.shape[0], x.dtype
        self.run = run = self.impl(xp, x.shape, W.shape, self.padding, dt, self.keep_for_W,
                                   self.recorded, self.training)
        th, tw = run.th, run.tw
        parts = run.forward(xp, x, W, self._flip(xp, gamma, dt))
        self._normalising_map(xp, parts, N * th * tw * 4, gamma, dt)
        mean, scale = self.mean, self.scale
        self.positive = xp.empty(N * th * tw * OC, dtype=bool) if self.relu else None
        y = xp.empty((N, OC, th, tw), dtype=dt)

        def normalise(k):   # the pooled quarter: centred (kept for backward), mapped, to NCHW
            n0, n1 = run.chunks[k]
            c = run.quarter(run.pooled, k)
            c -= mean
            z = _workspace.take(xp, c.shape, dt)
            xp.multiply(c, scale, out=z)
            if beta is not None:
                z += beta
            if self.relu:
                xp.greater(z, 0, out=run.quarter(self.positive, k))
                relu_into(z, z)
            xp.copyto(y[n0:n1], z.reshape(th, tw, n1 - n0, OC).transpose(2, 3, 0, 1))
            _workspace.give(z)

        chunks_side_by_side(len(run.chunks), normalise, nbytes=y.nbytes, like=y)
        self.centred = run.pooled
        if not self.recorded:
            self._release_buffers()
        return y

    def backward(self, gy):
        xp = B.get_array_module(gy)
        N, OC, th, tw = gy.shape
        dt, run = gy.dtype, self.run
        need_x, need_W = self.inputs[0].requires_grad, self.inputs[1].requires_grad
        # gy in the chunks' (th, tw, n, OC) layout, through the ReLU; per chunk sums
        g_all = xp.empty(N * th * tw * OC, dtype=dt)
        sums = [None] * len(run.chunks)

        def gather(k):
            n0, n1 = run.chunks[k]
            g = run.quarter(g_all, k)
            xp.copyto(g.reshape(th, tw, n1 - n0, OC), gy[n0:n1].transpose(2, 3, 0, 1))
            if self.relu:
                g *= run.quarter(self.positive, k)
            ones = xp.ones(g.shape[0], dtype=dt)
            t = _workspace.take(xp, g.shape, dt)
            xp.multiply(g, run.quarter(self.centred, k), out=t)
            sums[k] = (xp.matmul(ones, g), xp.matmul(ones, t))
            _workspace.give(t)

        chunks_side_by_side(len(run.chunks), gather, nbytes=gy.nbytes, like=gy)
        sum_gy = sum_in_order([s[0] for s in sums])
        sum_gy_xhat = sum_in_order([s[1] for s in sums]) * self.inv_std
        c1c0 = (self._gradient_map(sum_gy, sum_gy_xhat, dt.type(N * th * tw * 4))
                if self.training else None)
        gx, gW = run.backward(xp, self.inputs[0].data, g_all, self.scale, c1c0, need_x, need_W)
        if self.has_affine:
            return gx, gW, sum_gy_xhat, sum_gy
        return gx, gW

class ImageConvBatchNormMaxPool(_ConvBatchNormPool):
    """The same op as :class:`ConvBatchNormMaxPool` for layers so small that conv2d takes one
    product per image, through
    :class:`minidl.kernels.host.fused_conv_bn_pool_per_image.ImageBlocksPool` (the pooled
    quarter comes out in NCHW)."""

    def forward(self, x, W, gamma=None, beta=None):
        xp = B.get_array_module(x)
        N, C, H, Wd = x.shape
        OC, dt = W.shape[0], x.dtype
        self.run = run = self.impl(xp, x, W, self.padding, B.backend_of(x).name,
                                   self.keep_for_W, self.recorded, self.training)
        th, tw = run.th, run.tw
        R = th * tw
        flip = self._flip(xp, gamma, dt)
        parts = run.forward(xp, x, W, None if flip is None else flip[:, None])
        self._normalising_map(xp, parts, N * 4 * R, gamma, dt)
        mean, scale = self.mean, self.scale
        self.positive = xp.empty((N, OC, R), dtype=bool) if self.relu else None
        y = xp.empty((N, OC, R), dtype=dt)
        pooled = run.pooled

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
        c1c0 = None
        if self.training:
            c1c0 = tuple(c[:, None] for c in self._gradient_map(sum_gy, sum_gy_xhat,
                                                                 dt.type(N * R * 4)))
        gx, gW = self.run.backward(xp, self.inputs[0].shape, self.inputs[1].data, g,
                                   self.scale, c1c0, need_x, need_W)
        if self.has_affine:
            return gx, gW, sum_gy_xhat, sum_gy
        return gx, gW

def conv2d_batch_norm_max_pool2d(x, W, running_mean=None, running_var=None, gamma=None,
                                 beta=None, padding=1, training=False, momentum=0.1, eps=1e-5,
                                 relu=False):
    """``max_pool2d(batch_norm(conv2d(x, W, padding=padding), ...), 2)``, with ``relu``
    followed by a ReLU, for a 3x3 kernel W (OC, C, 3, 3), stride 1, no bias, and an even
    output size.  One op where the registry has a kernel for it (op
    "conv2d_batch_norm_max_pool2d": "winograd" and "per_image" on the host, where conv2d would
    take those); the separate ops (:func:`conv2d`, then
    :func:`minidl.functions.batch_norm_max_pool2d`), its reference, elsewhere.

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
    N, C, H, Wd = x.shape
    geometry = ConvGeometry(N, C, H, Wd, OC, 3, 3, (1, 1), padding, (1, 1), 1, x.dtype,
                            B.backend_of(x.data).name)
    kernel = kernels.select(OP, geometry)
    if kernel is None:
        return batch_norm_max_pool2d(conv2d(x, W, padding=padding), running_mean, running_var,
                                     gamma, beta, training=training, momentum=momentum, eps=eps,
                                     relu=relu)
    inputs = [x, W] + ([affine[0], affine[1]] if affine[0] is not None else [])
    recorded = is_grad_enabled() and any(getattr(t, "requires_grad", False) for t in inputs)
    fn = _FUNCTIONS[kernel.name](padding, stats[0], stats[1], bool(training), float(momentum),
                                 float(eps), bool(relu), recorded,
                                 keep_for_W=recorded and W.requires_grad)
    fn.impl = kernel.impl
    return fn(*inputs)


OP = "conv2d_batch_norm_max_pool2d"
# each kernel of the op and the Function that runs it (batch norm's map around the kernel)
_FUNCTIONS = {"winograd": ConvBatchNormMaxPool, "per_image": ImageConvBatchNormMaxPool}


def fused_path(backend: str, C: int, OC: int, OH: int, OW: int) -> str | None:
    """Which op :func:`conv2d_batch_norm_max_pool2d` runs for a 3x3 stride-1 conv of C -> OC
    channels with an (OH, OW) output (even): "winograd" (:class:`ConvBatchNormMaxPool`) where
    conv2d would take Winograd, "per image" (:class:`ImageConvBatchNormMaxPool`) where it
    would take one product per image, both on the host; None (the separate ops) otherwise.
    The registry decides (``kernels.explain("conv2d_batch_norm_max_pool2d", ...)``)."""
    g = ConvGeometry(1, C, OH, OW, OC, 3, 3, padding=(1, 1), backend=backend)
    kernel = kernels.select(OP, g)
    return None if kernel is None else {"winograd": "winograd",
                                        "per_image": "per image"}[kernel.name]
