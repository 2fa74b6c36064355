"""AlexNet (Krizhevsky, Sutskever & Hinton 2012) in torchvision's single-tower layout::

    features    0 conv11x11/4 (64) 1 ReLU 2 maxpool3/2  3 conv5x5 (192) 4 ReLU 5 maxpool3/2
                6 conv3x3 (384) 7 ReLU  8 conv3x3 (256) 9 ReLU  10 conv3x3 (256) 11 ReLU
                12 maxpool3/2
    avgpool     adaptive average to 6x6
    classifier  0 Dropout 1 fc 9216->4096 2 ReLU 3 Dropout 4 fc 4096->4096 5 ReLU 6 fc ->1000

61,100,840 parameters.  torchvision's AlexNet has no local response normalisation;
``lrn=True`` adds the paper's (size 5, alpha 1e-4, beta 0.75, k 2) after the first two ReLUs.
That shifts the ``features`` indices, so torchvision weights load only with ``lrn=False``.
"""
from __future__ import annotations

from minidl import functions as F
from minidl.layers.activation import Dropout, ReLU
from minidl.layers.adaptive_pooling import AdaptiveAvgPool2d
from minidl.layers.conv import Conv2d
from minidl.layers.linear import Linear
from minidl.layers.lrn import LocalResponseNorm
from minidl.layers.module import Module, Sequential
from minidl.layers.pooling import MaxPool2d

__all__ = ["AlexNet", "alexnet"]


class AlexNet(Module):
    """(N, 3, H, W) with H, W >= 63 -> logits (N, num_classes); 224x224 is the usual size."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5, lrn: bool = False):
        super().__init__()
        norm = (lambda: [LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)]) if lrn \
            else (lambda: [])
        self.features = Sequential(
            Conv2d(3, 64, 11, stride=4, padding=2), ReLU(), *norm(), MaxPool2d(3, 2),
            Conv2d(64, 192, 5, padding=2), ReLU(), *norm(), MaxPool2d(3, 2),
            Conv2d(192, 384, 3, padding=1), ReLU(),
            Conv2d(384, 256, 3, padding=1), ReLU(),
            Conv2d(256, 256, 3, padding=1), ReLU(), MaxPool2d(3, 2))
        self.avgpool = AdaptiveAvgPool2d((6, 6))
        self.classifier = Sequential(
            Dropout(dropout), Linear(256 * 6 * 6, 4096), ReLU(),
            Dropout(dropout), Linear(4096, 4096), ReLU(),
            Linear(4096, num_classes))
        self.lrn = bool(lrn)

    def forward(self, x):
        x = self.avgpool(self.features(x))
        return self.classifier(F.flatten(x, 1))


def alexnet(num_classes: int = 1000, **kw) -> AlexNet:
    """AlexNet as torchvision builds it (61,100,840 parameters for 1000 classes)."""
    return AlexNet(num_classes, **kw)
