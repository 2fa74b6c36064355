"""Argument checks shared by the ops: inputs as Tensors, int-or-pair parameters, and the output
size of a sliding window (convolution and pooling)."""
from __future__ import annotations

from minidl import backend as B
from minidl.autograd import Tensor, as_tensor
from minidl.kernels.geometry import conv_output_size, output_hw, pair

__all__ = ["as_input", "pair", "output_hw", "conv_output_size", "pool_args"]


def as_input(x, name: str, where: str) -> Tensor:
    """``x`` as a Tensor (a backend array is wrapped); a TypeError naming ``where`` and ``name``
    for anything else."""
    if isinstance(x, Tensor):
        return x
    if B.is_array(x):
        return as_tensor(x)
    raise TypeError(f"{where}: {name} must be a Tensor or a backend array, got "
                    f"{type(x).__name__}")


def pool_args(where, kernel_size, stride, padding):
    """(kernel, stride, padding) pairs of a pooling op; stride None means the kernel size."""
    kernel = pair(kernel_size, "kernel_size", where, 1)
    stride = kernel if stride is None else pair(stride, "stride", where, 1)
    padding = pair(padding, "padding", where, 0)
    if padding[0] > kernel[0] // 2 or padding[1] > kernel[1] // 2:
        # a window lying entirely in the padding would have no input (as in PyTorch)
        raise ValueError(f"{where}: padding must be at most half the kernel size, got "
                         f"padding {padding} for kernel_size {kernel}")
    return kernel, stride, padding
