"""2-D convolution (cross-correlation, as in PyTorch): the reference, im2col -> matrix product
-> col2im, written to be read.

    x (N, C, H, W) NCHW,  W (OC, C/groups, KH, KW) OIHW,  b (OC,)  ->  y (N, OC, OH, OW)
    OH = (H + 2*pad_h - dil_h*(KH - 1) - 1) // stride_h + 1   (and likewise OW)

With G = groups, Cg = C/G input channels and OC/G filters per group, K = Cg*KH*KW:

    forward   col (G, K, N*OH*OW)   = im2col(x)            (the input under every kernel tap)
              y2  (G, OC/G, N*OH*OW) = W2 (G, OC/G, K) @ col,   y = y2 as NCHW + b
    backward  gW2  = gy2 @ col^T                         (G, OC/G, K)
              gcol = W2^T @ gy2                          (G, K, N*OH*OW)
              gx   = col2im(gcol)                        (one slice-add per kernel tap)
              gb   = gy summed over N, OH, OW

The Function :class:`Conv2d` asks the kernel registry (:mod:`minidl.kernels`) once per call;
the chosen kernel (Winograd, per-image products, chunked column matrices, phase runs: see
``minidl.kernels.explain("conv2d", ...)`` and docs/design/conv.md) runs instead of the
reference, which runs when none applies or when forced
(``with minidl.kernels.force("conv2d", "reference")``).
"""
from __future__ import annotations

import numbers

from minidl import backend as B
from minidl import kernels
from minidl.autograd import Function, is_grad_enabled
from minidl.functions.arguments import as_input as _as_input, conv_output_size
from minidl.functions.arguments import output_hw as _output_hw, pair as _pair
from minidl.functions.im2col import col2im, im2col
from minidl.kernels.geometry import ConvGeometry

__all__ = ["conv2d", "conv_output_size", "conv2d_reference_forward",
           "conv2d_reference_backward"]


def conv2d_reference_forward(xp, x, W, b, stride, padding, dilation, groups):
    """(y (N, OC, OH, OW), col (G, K, N*OH*OW)) for x (N, C, H, W), W (OC, C/G, KH, KW), b
    (OC,) or None; ``col`` is what backward needs for gW."""
    N, C, H, Wd = x.shape
    OC, Cg, KH, KW = W.shape
    G = groups
    OH, OW = _output_hw("conv2d", (H, Wd), (KH, KW), stride, padding, dilation)
    col = im2col(xp, x, (KH, KW), stride, padding, dilation)        # (C*KH*KW, N*OH*OW)
    col = col.reshape(G, Cg * KH * KW, N * OH * OW)                   # rows grouped by channel
    W2 = W.reshape(G, OC // G, Cg * KH * KW)
    y2 = xp.matmul(W2, col)                                           # (G, OC/G, N*OH*OW)
    y = xp.ascontiguousarray(y2.reshape(OC, N, OH, OW).transpose(1, 0, 2, 3))
    if b is not None:
        y += b.reshape(1, OC, 1, 1)
    return y, col


def conv2d_reference_backward(xp, gy, x_shape, W, col, stride, padding, dilation, groups,
                              need_x=True, need_W=True, need_b=True):
    """(gx (N, C, H, W), gW (OC, C/G, KH, KW), gb (OC,)) for gy (N, OC, OH, OW), None where
    not asked; ``col`` from :func:`conv2d_reference_forward` (needed for gW)."""
    N, OC, OH, OW = gy.shape
    _, Cg, KH, KW = W.shape
    G = groups
    gy2 = gy.transpose(1, 0, 2, 3).reshape(G, OC // G, N * OH * OW)  # (G, OC/G, N*OH*OW)
    gx = gW = gb = None
    if need_W:
        gW = xp.matmul(gy2, col.transpose(0, 2, 1)).reshape(W.shape)  # gy2 @ col^T
    if need_x:
        W2 = W.reshape(G, OC // G, Cg * KH * KW)
        gcol = xp.matmul(W2.transpose(0, 2, 1), gy2)                  # W2^T @ gy2
        gx = col2im(xp, gcol.reshape(G * Cg * KH * KW, N * OH * OW), x_shape, (KH, KW),
                    stride, padding, dilation)
    if need_b:
        gb = gy.sum(axis=(0, 2, 3))
    return gx, gW, gb


class Conv2d(Function):
    """y = conv2d(x, W) + b: the registry's kernel for this call, or the reference."""

    # gx, gW and gb are arrays made by this backward (or views of them, which autograd copies)
    fresh_grads = True

    def __init__(self, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1,
                 keep_col=False, recorded=True):
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        # keep_col: W needs a gradient, so a kernel keeps its column matrix (or Winograd's
        # tiles) for backward; recorded: a backward may come (else buffers go back at once)
        self.keep_col, self.recorded = keep_col, recorded
        self.kernel = self.impl = self.col = None

    def forward(self, x, W, b=None):
        xp = B.get_array_module(x)
        N, C, H, Wd = x.shape
        OC, _, KH, KW = W.shape
        self.geometry = ConvGeometry(N, C, H, Wd, OC, KH, KW, self.stride, self.padding,
                                     self.dilation, self.groups, x.dtype, B.backend_of(x).name)
        self.kernel = kernels.select("conv2d", self.geometry)
        if self.kernel is not None:
            self.impl = self.kernel.impl(self.geometry, keep_col=self.keep_col,
                                         recorded=self.recorded)
            return self.impl.forward(xp, x, W, b)
        y, col = conv2d_reference_forward(xp, x, W, b, self.stride, self.padding,
                                          self.dilation, self.groups)
        self.col = col if self.keep_col else None   # only gW needs the columns
        return y

    def backward(self, gy):
        xp = B.get_array_module(gy)
        x, W = self.inputs[0].data, self.inputs[1].data
        need_x, need_W = self.inputs[0].requires_grad, self.inputs[1].requires_grad
        has_b = len(self.inputs) == 3
        need_b = has_b and self.inputs[2].requires_grad
        if self.impl is not None:
            gx, gW, gb = self.impl.backward(xp, gy, x, W, need_x, need_W, need_b)
        else:
            gx, gW, gb = conv2d_reference_backward(xp, gy, x.shape, W, self.col, self.stride,
                                                   self.padding, self.dilation, self.groups,
                                                   need_x, need_W, need_b)
        return (gx, gW, gb) if has_b else (gx, gW)

    def release(self) -> None:
        if getattr(self, "impl", None) is not None:
            self.impl.release()
        super().release()


def conv2d(x, W, b=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation, as ``torch.nn.functional.conv2d``).

    Parameters
    ----------
    x : Tensor or array (N, C, H, W), floating.
    W : Tensor or array (OC, C // groups, KH, KW), same dtype as ``x``.
    b : Tensor or array (OC,) or None.
    stride, padding, dilation : int or (h, w) pair; stride and dilation >= 1, padding >= 0
        (zero padding on both sides).
    groups : int >= 1 dividing both C and OC; channel group g of x meets filters
        g*OC/groups ... (g+1)*OC/groups - 1.

    Returns a Tensor (N, OC, OH, OW) with OH = (H + 2*pad - dil*(KH-1) - 1) // stride + 1.
    """
    x, W = _as_input(x, "x", "conv2d"), _as_input(W, "W", "conv2d")
    stride = _pair(stride, "stride", "conv2d", 1)
    padding = _pair(padding, "padding", "conv2d", 0)
    dilation = _pair(dilation, "dilation", "conv2d", 1)
    if not isinstance(groups, numbers.Integral) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"conv2d: groups must be a positive int, got {groups!r}")
    if x.ndim != 4:
        raise ValueError(f"conv2d: x must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")
    if W.ndim != 4:
        raise ValueError(f"conv2d: W must be 4-D (OC, C/groups, KH, KW), got shape "
                         f"{tuple(W.shape)}")
    N, C, H, Wd = x.shape
    OC, Cg, KH, KW = W.shape
    if OC % groups:
        raise ValueError(f"conv2d: W has {OC} output channels, not divisible by "
                         f"groups={groups}")
    if C != Cg * groups:
        raise ValueError(f"conv2d: x has {C} channels but W of shape {tuple(W.shape)} with "
                         f"groups={groups} expects {Cg * groups}")
    if x.dtype.kind != "f":
        raise TypeError(f"conv2d: x must be floating, got dtype {x.dtype}")
    if W.dtype != x.dtype:
        raise TypeError(f"conv2d: W has dtype {W.dtype} but x has {x.dtype}; they must match")
    inputs = [x, W]
    if b is not None:
        b = _as_input(b, "b", "conv2d")
        if tuple(b.shape) != (OC,):
            raise ValueError(f"conv2d: b must have shape ({OC},) to match W {tuple(W.shape)}, "
                             f"got {tuple(b.shape)}")
        if b.dtype != x.dtype:
            raise TypeError(f"conv2d: b has dtype {b.dtype} but x has {x.dtype}; they must "
                            "match")
        inputs.append(b)
    _output_hw("conv2d", (H, Wd), (KH, KW), stride, padding, dilation)
    recorded = is_grad_enabled() and any(t.requires_grad for t in inputs)
    keep_col = recorded and W.requires_grad
    return Conv2d(stride, padding, dilation, int(groups), keep_col, recorded)(*inputs)
