"""AdaptiveAvgPool2d layer: average-pool to a fixed output size; no parameters."""
from __future__ import annotations

from minidl.functions.adaptive_pooling import adaptive_avg_pool2d, adaptive_output_size
from minidl.layers.module import Module, check_input, short_pair

__all__ = ["AdaptiveAvgPool2d"]


class AdaptiveAvgPool2d(Module):
    """(N, C, H, W) -> (N, C, OH, OW) for any H, W (bins as ``torch.nn.AdaptiveAvgPool2d``).

    >>> pool = AdaptiveAvgPool2d((6, 6))     # torchvision AlexNet's classifier input
    """

    def __init__(self, output_size):
        super().__init__()
        self.output_size = adaptive_output_size(output_size)

    def forward(self, x):
        x = check_input(self, x, "(N, C, H, W)", ndim=4)
        return adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self):
        return f"output_size={short_pair(self.output_size)}"
