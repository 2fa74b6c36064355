"""Named geometries of the ops that have kernels: what a kernel's ``applies`` predicate reads.

A geometry is a frozen dataclass of one call's shapes, parameters, dtype and backend name, with
the derived sizes as properties, so that a predicate reads ``g.OH`` and ``g.stride`` instead of
positions in a tuple.  The shape legend is the same everywhere:

    x (N, C, H, W)  ->  y (N, OC, OH, OW);  kernel (KH, KW);  Hp = H + 2*pad_h,  Wp likewise
    OH = (H + 2*pad_h - dil_h*(KH - 1) - 1) // stride_h + 1   (and OW likewise)
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy

from minidl import backend as B

__all__ = ["pair", "conv_output_size", "output_hw", "ConvGeometry", "PoolGeometry",
           "BatchNormGeometry", "UpdateGeometry"]


def pair(value, name: str, where: str, minimum: int = 0) -> tuple[int, int]:
    """``(a, b)`` from an int or a pair of ints, each an int >= ``minimum``; a TypeError or
    ValueError naming ``where`` and ``name`` otherwise."""
    items = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(items) != 2 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                                  for v in items):
        raise TypeError(f"{where}: {name} must be an int or a pair of ints, got {value!r}")
    if any(v < minimum for v in items):
        raise ValueError(f"{where}: {name} must be >= {minimum}, got {value!r}")
    return int(items[0]), int(items[1])


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0,
                     dilation: int = 1) -> int:
    """Output length of a convolution (or pooling) along one axis (may be <= 0)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def output_hw(where, hw, kernel, stride, padding, dilation=(1, 1)) -> tuple[int, int]:
    """(OH, OW), or a ValueError naming ``where`` when the window does not fit."""
    out = tuple(conv_output_size(hw[i], kernel[i], stride[i], padding[i], dilation[i])
                for i in range(2))
    if out[0] <= 0 or out[1] <= 0:
        eff = tuple(dilation[i] * (kernel[i] - 1) + 1 for i in range(2))
        dil = f" with dilation {dilation}" if tuple(dilation) != (1, 1) else ""
        raise ValueError(f"{where}: kernel {kernel[0]}x{kernel[1]}{dil} (spans "
                         f"{eff[0]}x{eff[1]}) is larger than the padded input "
                         f"{hw[0] + 2 * padding[0]}x{hw[1] + 2 * padding[1]} (input "
                         f"{hw[0]}x{hw[1]}, padding {padding})")
    return out


def _backend_name(backend) -> str:
    return B.get_backend().name if backend is None else str(backend)


@dataclass(frozen=True)
class ConvGeometry:
    """One conv2d call: x (N, C, H, W), W (OC, C/groups, KH, KW) -> y (N, OC, OH, OW)."""
    N: int
    C: int
    H: int
    W: int
    OC: int
    KH: int
    KW: int
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    groups: int = 1
    dtype: numpy.dtype = numpy.dtype(numpy.float32)
    backend: str = "numpy"

    @classmethod
    def from_shapes(cls, x_shape, W_shape, stride=1, padding=0, dilation=1, groups=1,
                    dtype="float32", backend=None) -> "ConvGeometry":
        """The geometry of ``conv2d`` on arrays of these shapes (for :func:`explain`)."""
        N, C, H, W = (int(v) for v in x_shape)
        OC, Cg, KH, KW = (int(v) for v in W_shape)
        if Cg * groups != C:
            raise ValueError(f"conv2d: x has {C} channels but W of shape {tuple(W_shape)} "
                             f"with groups={groups} expects {Cg * groups}")
        g = cls(N, C, H, W, OC, KH, KW, pair(stride, "stride", "conv2d", 1),
                pair(padding, "padding", "conv2d", 0), pair(dilation, "dilation", "conv2d", 1),
                int(groups), numpy.dtype(dtype), _backend_name(backend))
        output_hw("conv2d", (H, W), (KH, KW), g.stride, g.padding, g.dilation)
        return g

    @property
    def OH(self) -> int:
        return conv_output_size(self.H, self.KH, self.stride[0], self.padding[0],
                                self.dilation[0])

    @property
    def OW(self) -> int:
        return conv_output_size(self.W, self.KW, self.stride[1], self.padding[1],
                                self.dilation[1])

    @property
    def Hp(self) -> int:
        return self.H + 2 * self.padding[0]

    @property
    def Wp(self) -> int:
        return self.W + 2 * self.padding[1]

    @property
    def Cg(self) -> int:
        """Input channels per group (W's second axis)."""
        return self.C // self.groups

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    @property
    def macs_per_image(self) -> int:
        """Multiply-adds of one image's forward product: OC * C/groups*KH*KW * OH*OW."""
        return self.OC * self.Cg * self.KH * self.KW * self.OH * self.OW


@dataclass(frozen=True)
class PoolGeometry:
    """One max or average pooling call: x (N, C, H, W) -> y (N, C, OH, OW); ``mode`` is "max"
    or "avg"."""
    N: int
    C: int
    H: int
    W: int
    KH: int
    KW: int
    stride: tuple[int, int]
    padding: tuple[int, int] = (0, 0)
    mode: str = "max"
    count_include_pad: bool = True
    dtype: numpy.dtype = numpy.dtype(numpy.float32)
    backend: str = "numpy"

    @classmethod
    def from_shapes(cls, x_shape, kernel_size, stride=None, padding=0, mode="max",
                    count_include_pad=True, dtype="float32", backend=None) -> "PoolGeometry":
        where = f"{mode}_pool2d"
        N, C, H, W = (int(v) for v in x_shape)
        kernel = pair(kernel_size, "kernel_size", where, 1)
        stride = kernel if stride is None else pair(stride, "stride", where, 1)
        g = cls(N, C, H, W, *kernel, stride, pair(padding, "padding", where, 0), mode,
                bool(count_include_pad), numpy.dtype(dtype), _backend_name(backend))
        output_hw(where, (H, W), kernel, stride, g.padding)
        return g

    @property
    def OH(self) -> int:
        return conv_output_size(self.H, self.KH, self.stride[0], self.padding[0])

    @property
    def OW(self) -> int:
        return conv_output_size(self.W, self.KW, self.stride[1], self.padding[1])

    @property
    def tiles(self) -> bool:
        """Whether the windows tile the input exactly: stride = kernel, no padding, and the
        sizes divisible by the kernel."""
        return (self.stride == (self.KH, self.KW) and self.padding == (0, 0)
                and self.H % self.KH == 0 and self.W % self.KW == 0)

    @property
    def overlapping(self) -> bool:
        """Whether neighbouring windows overlap (stride smaller than the kernel)."""
        return self.stride[0] < self.KH or self.stride[1] < self.KW


@dataclass(frozen=True)
class BatchNormGeometry:
    """One batch norm call on x (N, C, L...) in training or eval mode."""
    N: int
    C: int
    L: int
    training: bool = True
    dtype: numpy.dtype = numpy.dtype(numpy.float32)
    backend: str = "numpy"

    @classmethod
    def from_shapes(cls, x_shape, training=True, dtype="float32",
                    backend=None) -> "BatchNormGeometry":
        N, C = int(x_shape[0]), int(x_shape[1])
        L = int(numpy.prod(x_shape[2:], dtype=numpy.int64)) if len(x_shape) > 2 else 1
        return cls(N, C, L, bool(training), numpy.dtype(dtype), _backend_name(backend))


@dataclass(frozen=True)
class UpdateGeometry:
    """One optimizer update of a parameter of ``size`` elements."""
    size: int
    dtype: numpy.dtype = numpy.dtype(numpy.float32)
    grad_dtype: numpy.dtype = numpy.dtype(numpy.float32)
    backend: str = "numpy"

    @classmethod
    def from_shapes(cls, shape, dtype="float32", grad_dtype=None,
                    backend=None) -> "UpdateGeometry":
        size = int(numpy.prod(shape, dtype=numpy.int64))
        dtype = numpy.dtype(dtype)
        return cls(size, dtype, dtype if grad_dtype is None else numpy.dtype(grad_dtype),
                   _backend_name(backend))
