"""GoogLeNet, i.e. Inception v1 (Szegedy et al. 2015, "Going Deeper with Convolutions"), as
torchvision builds it, with torchvision's module names::

    (N, 3, 224, 224) -conv1 7x7/2-> 64x112x112 -maxpool 3/2-> 64x56x56 -conv2 1x1, conv3 3x3->
    192x56x56 -maxpool-> 192x28x28 -inception3a,3b-> 480x28x28 -maxpool-> 480x14x14
    -inception4a [-aux1 in training]-> 512 -4b,4c,4d [-aux2 in training]-> 528 -4e-> 832x14x14
    -maxpool 2/2-> 832x7x7 -inception5a,5b-> 1024x7x7 -global avg, dropout 0.2, fc-> (N, classes)

An Inception module runs four branches on the same input and concatenates them on C:
1x1 | 1x1 -> 3x3 | 1x1 -> "5x5" | 3x3 max pool -> 1x1.  Two departures from the paper, both
torchvision's and both needed to load its weights: every convolution is a BasicConv2d (conv
without bias, batch norm with eps 0.001, ReLU; the paper predates batch norm), and the "5x5"
branch is a 3x3 convolution (https://github.com/pytorch/vision/issues/906).  Max pools round
their output size up (``ceil_mode``).

6,624,904 parameters without the auxiliary heads, 13,004,888 with them (each: adaptive 4x4
average, 1x1 conv to 128, fc 2048 -> 1024, ReLU, dropout 0.7, fc -> classes).  torchvision's
pretrained checkpoint holds the heads (untrained); build with ``transform_input=True`` for it:
its weights were ported from TensorFlow and expect inputs scaled to [-1, 1], and this re-maps
an ImageNet-normalised input to that.
"""
from __future__ import annotations

from minidl import functions as F
from minidl.functions.adaptive_pooling import adaptive_avg_pool2d
from minidl.layers.activation import Dropout
from minidl.layers.blocks import BasicConv2d
from minidl.layers.linear import Linear
from minidl.layers.module import Module, Sequential
from minidl.layers.pooling import MaxPool2d
from minidl.models.inception import transform_input

__all__ = ["GoogLeNet", "Inception", "InceptionAux", "googlenet"]


class Inception(Module):
    """(N, cin, H, W) -> (N, ch1x1 + ch3x3 + ch5x5 + pool_proj, H, W)."""

    def __init__(self, cin, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj):
        super().__init__()
        self.branch1 = BasicConv2d(cin, ch1x1, 1)
        self.branch2 = Sequential(BasicConv2d(cin, ch3x3red, 1),
                                  BasicConv2d(ch3x3red, ch3x3, 3, padding=1))
        self.branch3 = Sequential(BasicConv2d(cin, ch5x5red, 1),   # 3x3, as torchvision
                                  BasicConv2d(ch5x5red, ch5x5, 3, padding=1))
        # 3x3 stride 1 pad 1: ceil_mode (torchvision's) gives the same size, H x W
        self.branch4 = Sequential(MaxPool2d(3, 1, 1), BasicConv2d(cin, pool_proj, 1))

    def forward(self, x):
        return F.concatenate([self.branch1(x), self.branch2(x), self.branch3(x),
                              self.branch4(x)], axis=1)


class InceptionAux(Module):
    """Auxiliary classifier on the 14x14 grid (training only): (N, cin, H, W) -> (N, classes)."""

    def __init__(self, cin: int, num_classes: int, dropout: float = 0.7):
        super().__init__()
        self.conv = BasicConv2d(cin, 128, 1)
        self.fc1 = Linear(2048, 1024)
        self.fc2 = Linear(1024, num_classes)
        self.dropout = Dropout(dropout)

    def forward(self, x):
        x = self.conv(adaptive_avg_pool2d(x, 4))
        x = F.relu(self.fc1(F.flatten(x, 1)))
        return self.fc2(self.dropout(x))


class GoogLeNet(Module):
    """GoogLeNet.  In training mode with ``aux_logits`` the forward returns
    ``(logits, aux2, aux1)``, as torchvision's ``GoogLeNetOutputs(logits, aux_logits2,
    aux_logits1)`` (aux1 reads inception4a's output, aux2 inception4d's; torchvision returned
    them swapped before https://github.com/pytorch/vision/pull/8743); in eval mode, the logits
    only.  Inputs of 224x224; the smallest is 15x15 (torchvision's min_size)."""

    def __init__(self, num_classes: int = 1000, aux_logits: bool = True,
                 transform_input: bool = False, dropout: float = 0.2,
                 dropout_aux: float = 0.7):
        super().__init__()
        self.aux_logits, self.transform_input = bool(aux_logits), bool(transform_input)
        self.conv1 = BasicConv2d(3, 64, 7, stride=2, padding=3)
        self.conv2 = BasicConv2d(64, 64, 1)
        self.conv3 = BasicConv2d(64, 192, 3, padding=1)
        self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32)
        self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64)
        self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64)
        self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64)
        self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64)
        self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64)
        self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128)
        self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128)
        self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128)
        self.aux1 = InceptionAux(512, num_classes, dropout_aux) if aux_logits else None
        self.aux2 = InceptionAux(528, num_classes, dropout_aux) if aux_logits else None
        self.dropout = Dropout(dropout)
        self.fc = Linear(1024, num_classes)

    def forward(self, x):
        if self.transform_input:
            x = transform_input(x)
        heads = self.aux_logits and self.training
        x = F.max_pool2d(self.conv1(x), 3, 2, ceil_mode=True)
        x = F.max_pool2d(self.conv3(self.conv2(x)), 3, 2, ceil_mode=True)
        x = self.inception3b(self.inception3a(x))
        x = self.inception4a(F.max_pool2d(x, 3, 2, ceil_mode=True))
        aux1 = self.aux1(x) if heads else None
        x = self.inception4d(self.inception4c(self.inception4b(x)))
        aux2 = self.aux2(x) if heads else None
        x = F.max_pool2d(self.inception4e(x), 2, 2, ceil_mode=True)
        x = self.inception5b(self.inception5a(x))
        x = self.fc(self.dropout(F.global_avg_pool2d(x)))
        return (x, aux2, aux1) if heads else x


def googlenet(num_classes: int = 1000, aux_logits: bool = True, **kw) -> GoogLeNet:
    """GoogLeNet as torchvision builds it (13,004,888 parameters with ``aux_logits``,
    6,624,904 without)."""
    return GoogLeNet(num_classes, aux_logits=aux_logits, **kw)
