"""2-D pooling: max, average and global average, over NCHW inputs -- the reference.

    x (N, C, H, W)  ->  y (N, C, OH, OW),   OH = (H + 2*pad_h - KH) // stride_h + 1  (floor)

Max pooling's ``ceil_mode`` (PyTorch's: OH = ceil(...) + 1, dropping a last window that would
start in the right padding; GoogLeNet's pools use it) is the floor-mode pool of the input padded
on the bottom and right with -inf: a small :class:`PadBottomRight` node in front, so no kernel
ever sees a ceil-mode geometry.

Both windowed pools are written as a loop over the KH*KW kernel taps: tap (i, j) is the strided
view ``xpad[:, :, i::sh, j::sw]`` cropped to (OH, OW) (:mod:`minidl.kernels.pool_taps`), so each
step is one elementwise op on output-sized arrays, never a Python loop per pixel.

- Max: pad with -inf; forward is a running maximum over the taps.  Backward sends each
  window's gradient to its FIRST maximal element in row-major order, as PyTorch does: tap by
  tap, ``hit = (tap == y)`` among the windows no earlier tap has claimed, so tied values
  (common after ReLU: windows of zeros) get the gradient once, not once per tie.  A window
  holding NaN outputs NaN and passes no gradient (NaN == NaN is false).
- Average: pad with zeros; forward is the sum over the taps divided by KH*KW
  (``count_include_pad=True``, PyTorch's default) or by the number of real pixels under the
  window.  Backward adds gy / divisor into every tap.

Backward scatters each tap's share with a slice-add; within one tap the slices never overlap,
so ``+=`` is exact even when windows do (3x3 stride 2), on NumPy and CuPy alike.

Fast paths are kernels (:mod:`minidl.kernels`): each Function asks
``kernels.select("max_pool2d" | "avg_pool2d", geometry)`` once and runs the kernel chosen
(2x2 halving, wide phases on the host, tiled windows) or the taps below; see
``kernels.explain("max_pool2d", x_shape, kernel_size, stride, padding)``.
"""
from __future__ import annotations

import numbers

from minidl import backend as B
from minidl import kernels
from minidl.autograd import Function
from minidl.functions.arguments import as_input, output_hw, pool_args
from minidl.kernels.geometry import PoolGeometry
from minidl.kernels.pool_taps import avg_divisor, pad, tap, taps
from minidl.parallel import parallel_for

__all__ = ["max_pool2d", "avg_pool2d", "global_avg_pool2d"]


class _Pool2d(Function):
    """What max and average pooling share: the geometry, the registry's choice, the buffers."""

    fresh_grads = True  # gx is a new array (or a view of one: copied when kept)
    op = mode = ""

    def __init__(self, kernel, stride, padding, count_include_pad=True):
        self.kernel_size, self.stride, self.padding = kernel, stride, padding
        self.count_include_pad = count_include_pad

    def _choose(self, x):
        """The call's geometry, and the kernel that runs it (None: the reference), once."""
        self.geometry = PoolGeometry(*x.shape, *self.kernel_size, self.stride, self.padding,
                                     self.mode, self.count_include_pad, x.dtype,
                                     B.backend_of(x).name)
        self.kernel = kernels.select(self.op, self.geometry)
        self.run = None if self.kernel is None else self.kernel.impl(self.geometry)
        return self.geometry

    def _grad_buffer(self, xp, dtype):
        """Zeros (N, C, Hp, Wp): the padded input's gradient, to add the taps' shares into."""
        g = self.geometry
        ph, pw = g.padding
        return xp.zeros((g.N, g.C, g.H + 2 * ph, g.W + 2 * pw), dtype=dtype)

    def _crop(self, gpad):
        """The gradient of x (N, C, H, W) inside the padded one."""
        g = self.geometry
        ph, pw = g.padding
        if ph == 0 and pw == 0:
            return gpad
        return gpad[:, :, ph:ph + g.H, pw:pw + g.W]


class MaxPool2d(_Pool2d):
    """y = the maximum over each window; see the module docstring."""

    op, mode = "max_pool2d", "max"

    def forward(self, x):
        xp = B.get_array_module(x)
        g = self._choose(x)
        if self.run is not None:
            return self.run.forward(xp, x)
        xpad = pad(xp, x, g.padding, float("-inf"))
        y = xp.empty((g.N, g.C, g.OH, g.OW), dtype=x.dtype)

        def part(lo, hi):  # images lo:hi (in parallel on a multi-core CPU)
            yp = y[lo:hi]
            views = taps(xpad[lo:hi], g.KH, g.KW, g.stride, g.OH, g.OW)
            xp.copyto(yp, next(views)[2])          # y = tap (0, 0)
            for _, _, view in views:
                xp.maximum(yp, view, out=yp)       # y = max(y, tap)

        parallel_for(g.N, part, nbytes=x.nbytes, like=x)
        self.xpad, self.y = xpad, y
        return y

    def backward(self, gy):
        xp = B.get_array_module(gy)
        if self.run is not None:
            return self.run.backward(xp, gy)
        g = self.geometry
        gpad = self._grad_buffer(xp, gy.dtype)
        last = g.KH * g.KW - 1

        def part(lo, hi):  # images lo:hi (in parallel on a multi-core CPU)
            y, gyp, gp = self.y[lo:hi], gy[lo:hi], gpad[lo:hi]
            free = None  # windows whose maximum no earlier tap has claimed
            for k, (i, j, view) in enumerate(taps(self.xpad[lo:hi], g.KH, g.KW, g.stride,
                                                  g.OH, g.OW)):
                hit = view == y                    # this tap holds its window's maximum...
                if free is None:
                    free = ~hit
                else:
                    hit &= free                    # ...and no earlier tap did
                    if k < last:
                        free ^= hit
                gview = tap(gp, i, j, g.stride, g.OH, g.OW)
                gview += gyp * hit                 # the claimed windows' gradient

        parallel_for(g.N, part, nbytes=gpad.nbytes, like=gy)
        return self._crop(gpad)


class AvgPool2d(_Pool2d):
    """y = the mean over each window; see the module docstring."""

    op, mode = "avg_pool2d", "avg"

    def forward(self, x):
        xp = B.get_array_module(x)
        g = self._choose(x)
        if self.run is not None:
            return self.run.forward(xp, x)
        self.divisor = avg_divisor(xp, g, x.dtype)   # KH*KW, or (1, 1, OH, OW) counts
        views = taps(pad(xp, x, g.padding, 0), g.KH, g.KW, g.stride, g.OH, g.OW)
        y = next(views)[2].copy()                    # y = tap (0, 0)
        for _, _, view in views:
            y += view                                # y += tap
        y /= self.divisor
        return y

    def backward(self, gy):
        xp = B.get_array_module(gy)
        if self.run is not None:
            return self.run.backward(xp, gy)
        g = self.geometry
        share = gy / self.divisor
        gpad = self._grad_buffer(xp, gy.dtype)
        for _, _, view in taps(gpad, g.KH, g.KW, g.stride, g.OH, g.OW):
            view += share                            # every tap gets gy / divisor
        return self._crop(gpad)


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


class PadBottomRight(Function):
    """x (N, C, H, W) -> (N, C, H + bottom, W + right), the new rows and columns ``value``;
    the gradient is gy's top-left (H, W) corner."""

    fresh_grads = True

    def __init__(self, bottom, right, value):
        self.bottom, self.right, self.value = bottom, right, value

    def forward(self, x):
        xp = B.get_array_module(x)
        N, C, self.H, self.W = x.shape
        y = xp.full((N, C, self.H + self.bottom, self.W + self.right), self.value,
                    dtype=x.dtype)
        y[:, :, :self.H, :self.W] = x
        return y

    def backward(self, gy):
        return gy[:, :, :self.H, :self.W].copy()


def ceil_mode_extra(size, kernel, stride, padding):
    """How many -inf rows (or columns) to add after the input so that a floor-mode pool gives
    PyTorch's ceil-mode output size: ceil((size + 2*pad - kernel) / stride) + 1 windows, less
    one when the last would start in the right padding."""
    out = -(-(size + 2 * padding - kernel) // stride) + 1
    if (out - 1) * stride >= size + padding:
        out -= 1
    return max(0, (out - 1) * stride + kernel - (size + 2 * padding))


# --------------------------------------------------------------------------- public wrappers

def _check_x(x, where):
    x = as_input(x, "x", where)
    if x.ndim != 4:
        raise ValueError(f"{where}: x must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")
    if x.dtype.kind != "f":
        raise TypeError(f"{where}: x must be floating, got dtype {x.dtype}")
    return x


def max_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False):
    """Maximum over KH x KW windows (as ``torch.nn.functional.max_pool2d``).

    Parameters
    ----------
    x : Tensor or array (N, C, H, W), floating.
    kernel_size : int or (KH, KW).
    stride : int or pair; default ``kernel_size`` (non-overlapping windows).
    padding : int or pair, at most half the kernel; the border is padded with -inf.
    ceil_mode : bool; round the output size up, as PyTorch's ``ceil_mode=True`` (the last
        windows then hang over the bottom and right edges).

    Returns (N, C, OH, OW) with OH = (H + 2*pad - KH) // stride + 1 (or ceil_mode's size).  The
    gradient of a window goes to its first maximal element (row-major), like PyTorch.

    >>> max_pool2d(x, 2).shape      # x (8, 16, 28, 28)
    (8, 16, 14, 14)
    """
    x = _check_x(x, "max_pool2d")
    kernel, stride, padding = pool_args("max_pool2d", kernel_size, stride, padding)
    if not isinstance(ceil_mode, (bool, numbers.Integral)):
        raise TypeError(f"max_pool2d: ceil_mode must be a bool, got {ceil_mode!r}")
    if ceil_mode:
        extra = [ceil_mode_extra(x.shape[2 + i], kernel[i], stride[i], padding[i])
                 for i in range(2)]
        if extra[0] or extra[1]:
            x = PadBottomRight(*extra, float("-inf"))(x)
    output_hw("max_pool2d", x.shape[2:], kernel, stride, padding)
    return MaxPool2d(kernel, stride, padding)(x)


def avg_pool2d(x, kernel_size, stride=None, padding=0, count_include_pad=True):
    """Mean over KH x KW windows (as ``torch.nn.functional.avg_pool2d``).

    Zero padding; with ``count_include_pad`` (default, as PyTorch) every window is divided by
    KH*KW, otherwise by the number of real pixels it covers.  Shapes as :func:`max_pool2d`.
    """
    x = _check_x(x, "avg_pool2d")
    kernel, stride, padding = pool_args("avg_pool2d", kernel_size, stride, padding)
    output_hw("avg_pool2d", x.shape[2:], kernel, stride, padding)
    return AvgPool2d(kernel, stride, padding, bool(count_include_pad))(x)


def global_avg_pool2d(x, keepdims=False):
    """Mean over the spatial axes: (N, C, H, W) -> (N, C), or (N, C, 1, 1) with ``keepdims``."""
    x = _check_x(x, "global_avg_pool2d")
    if not isinstance(keepdims, (bool, numbers.Integral)):
        raise TypeError(f"global_avg_pool2d: keepdims must be a bool, got {keepdims!r}")
    return GlobalAvgPool2d(bool(keepdims))(x)
