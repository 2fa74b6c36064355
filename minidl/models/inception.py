"""Inception-v3 (Szegedy et al. 2016, "Rethinking the Inception Architecture") with
torchvision's module names::

    (N, 3, 299, 299) -Conv2d_1a..4a, 2 maxpools-> (N, 192, 35, 35)
    -Mixed_5b,5c,5d (InceptionA)-> 288x35x35 -Mixed_6a (B)-> 768x17x17
    -Mixed_6b..6e (C)-> 768x17x17 [-AuxLogits-> (N, classes) in training]
    -Mixed_7a (D)-> 1280x8x8 -Mixed_7b,7c (E)-> 2048x8x8 -global avg, dropout, fc-> (N, classes)

27,161,264 parameters with the auxiliary head, 23,834,568 without.  The smallest input is
75x75.  ``transform_input=True`` (what torchvision sets for its pretrained weights) re-maps
an ImageNet-normalised input to the (x - 0.5) / 0.5 scaling those weights were trained with.
"""
from __future__ import annotations

from minidl import functions as F
from minidl.layers.activation import Dropout
from minidl.layers.blocks import (BasicConv2d, InceptionA, InceptionAux, InceptionB,
                                  InceptionC, InceptionD, InceptionE)
from minidl.layers.linear import Linear
from minidl.layers.module import Module

__all__ = ["Inception3", "inception_v3", "transform_input"]

_MEAN, _STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def transform_input(x):
    """x (N, 3, H, W) normalised with ImageNet's mean and std, re-normalised to [-1, 1] per
    channel: the input Google's weights (Inception-v3, GoogLeNet) were trained on, which
    torchvision applies when ``transform_input=True``."""
    chans = [x[:, c:c + 1] * (_STD[c] / 0.5) + (_MEAN[c] - 0.5) / 0.5 for c in range(3)]
    return F.concatenate(chans, axis=1)


class Inception3(Module):
    """Inception-v3.  In training mode with ``aux_logits`` the forward returns
    ``(logits, aux_logits)`` (the auxiliary head needs a 17x17 grid, i.e. 299x299 inputs); in
    eval mode it returns the logits only, as torchvision does."""

    def __init__(self, num_classes: int = 1000, aux_logits: bool = True,
                 transform_input: bool = False, dropout: float = 0.5,
                 count_include_pad: bool = True):
        super().__init__()
        self.aux_logits, self.transform_input = bool(aux_logits), bool(transform_input)
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = InceptionA(192, pool_features=32, count_include_pad=count_include_pad)
        self.Mixed_5c = InceptionA(256, pool_features=64, count_include_pad=count_include_pad)
        self.Mixed_5d = InceptionA(288, pool_features=64, count_include_pad=count_include_pad)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, channels_7x7=128, count_include_pad=count_include_pad)
        self.Mixed_6c = InceptionC(768, channels_7x7=160, count_include_pad=count_include_pad)
        self.Mixed_6d = InceptionC(768, channels_7x7=160, count_include_pad=count_include_pad)
        self.Mixed_6e = InceptionC(768, channels_7x7=192, count_include_pad=count_include_pad)
        self.AuxLogits = InceptionAux(768, num_classes) if aux_logits else None
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, count_include_pad=count_include_pad)
        self.Mixed_7c = InceptionE(2048, count_include_pad=count_include_pad)
        self.dropout = Dropout(dropout)
        self.fc = Linear(2048, num_classes)

    def forward(self, x):
        if self.transform_input:
            x = transform_input(x)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, 2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, 2)
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c",
                     "Mixed_6d", "Mixed_6e"):
            x = getattr(self, name)(x)
        aux = self.AuxLogits(x) if self.AuxLogits is not None and self.training else None
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(x)))
        x = self.fc(self.dropout(F.global_avg_pool2d(x)))
        return (x, aux) if aux is not None else x


def inception_v3(num_classes: int = 1000, aux_logits: bool = True, **kw) -> Inception3:
    """Inception-v3 as torchvision builds it (27,161,264 parameters with ``aux_logits``)."""
    return Inception3(num_classes, aux_logits=aux_logits, **kw)
