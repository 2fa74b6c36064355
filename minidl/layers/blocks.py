"""Building blocks of ImageNet networks: residual blocks (He et al. 2016) and the Inception-v3
modules (Szegedy et al. 2016), with torchvision's sub-module names so that their state_dict
keys match torchvision's after the weight/bias renaming of :mod:`minidl.convert`.

Each block is a Module whose ``forward`` composes calls, so branching graphs (a shortcut, four
parallel branches concatenated on the channel axis) are written as plain code:

    BasicBlock   x -> conv3x3-BN-ReLU-conv3x3-BN -> + shortcut(x) -> ReLU        (ResNet-18/34)
    Bottleneck   x -> conv1x1-BN-ReLU-conv3x3-BN-ReLU-conv1x1-BN -> + shortcut(x) -> ReLU
    shortcut     identity, or ``downsample`` = conv1x1(stride)-BN when the shape changes
                 (projection shortcut, "option B")
    InceptionA..E   parallel BasicConv2d branches, concatenated on C (shapes in each docstring)

The forwards are the plain layer calls.  Each block lists in ``fusable`` the (conv, bn[, relu])
attributes its forward runs as ``relu(bn(conv(x)))``: :func:`minidl.fuse` turns them into
:class:`minidl.layers.fused.FusedConvBatchNorm2d`, which folds the batch norm into the
convolution in inference, with the same parameters and state_dict keys.
"""
from __future__ import annotations

from minidl import functions as F
from minidl.autograd import Tensor, is_grad_enabled
from minidl.functions.activation import relu_into
from minidl.functions.adaptive_pooling import adaptive_avg_pool2d
from minidl.layers.activation import ReLU
from minidl.layers.conv import Conv2d
from minidl.layers.linear import Linear
from minidl.layers.module import Module, Sequential
from minidl.layers.normalization import BatchNorm2d

__all__ = ["BasicBlock", "Bottleneck", "BasicConv2d", "InceptionA", "InceptionB",
           "InceptionC", "InceptionD", "InceptionE", "InceptionAux"]


def add_relu(out, shortcut):
    """``relu(out + shortcut)``; in place on ``out``'s buffer when no graph is recorded."""
    if is_grad_enabled() and (out.requires_grad or getattr(shortcut, "requires_grad", False)):
        return F.relu(out + shortcut)
    y = out.data
    y += shortcut.data if isinstance(shortcut, Tensor) else shortcut
    relu_into(y, y)
    return Tensor(y)


def conv3x3(cin, cout, stride=1):
    return Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def conv1x1(cin, cout, stride=1):
    return Conv2d(cin, cout, 1, stride=stride, bias=False)


def projection(cin, cout, stride):
    """The shortcut that changes shape: conv1x1(stride)-BN (torchvision's ``downsample``)."""
    return Sequential(conv1x1(cin, cout, stride), BatchNorm2d(cout))


class BasicBlock(Module):
    """Two 3x3 convolutions and a shortcut: (N, cin, H, W) -> (N, planes, H/stride, W/stride).

    ``downsample`` is a projection when ``stride != 1`` or ``cin != planes`` (else identity).
    """
    expansion = 1
    # for minidl.fuse: (conv, bn[, relu]) run as relu(bn(conv(x))) in forward
    fusable = (("conv1", "bn1", "relu1"), ("conv2", "bn2"), ("downsample.0", "downsample.1"))

    def __init__(self, cin: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv3x3(cin, planes, stride)
        self.bn1 = BatchNorm2d(planes)
        self.relu1 = ReLU()
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = BatchNorm2d(planes)
        self.downsample = projection(cin, planes, stride) \
            if stride != 1 or cin != planes else None
        self.stride = stride

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return add_relu(out, x if self.downsample is None else self.downsample(x))


class Bottleneck(Module):
    """1x1 reduce, 3x3 (with the stride, torchvision's "ResNet v1.5"), 1x1 expand by 4:
    (N, cin, H, W) -> (N, 4*planes, H/stride, W/stride)."""
    expansion = 4
    # for minidl.fuse: (conv, bn[, relu]) run as relu(bn(conv(x))) in forward
    fusable = (("conv1", "bn1", "relu1"), ("conv2", "bn2", "relu2"), ("conv3", "bn3"),
               ("downsample.0", "downsample.1"))

    def __init__(self, cin: int, planes: int, stride: int = 1):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = conv1x1(cin, planes)
        self.bn1 = BatchNorm2d(planes)
        self.relu1 = ReLU()
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = BatchNorm2d(planes)
        self.relu2 = ReLU()
        self.conv3 = conv1x1(planes, cout)
        self.bn3 = BatchNorm2d(cout)
        self.downsample = projection(cin, cout, stride) if stride != 1 or cin != cout else None
        self.stride = stride

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return add_relu(out, x if self.downsample is None else self.downsample(x))


# ------------------------------------------------------------------------------- Inception-v3

class BasicConv2d(Module):
    """conv (no bias) - BN (eps 1e-3) - ReLU: the unit every Inception branch is made of."""
    fusable = (("conv", "bn", "relu"),)     # for minidl.fuse: relu(bn(conv(x))) in forward

    def __init__(self, cin: int, cout: int, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = Conv2d(cin, cout, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = BatchNorm2d(cout, eps=0.001)
        self.relu = ReLU()

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


def _cat(branches):
    return F.concatenate(branches, axis=1)


def _avg3(x, count_include_pad=True):
    # torchvision: F.avg_pool2d(x, 3, stride=1, padding=1), count_include_pad=True; Keras's
    # 'same' pool divides by the real pixels under the window (count_include_pad=False)
    return F.avg_pool2d(x, 3, 1, 1, count_include_pad=count_include_pad)


class InceptionA(Module):
    """35x35 module (Mixed_5b..5d): 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1,
    (N, cin, H, W) -> (N, 224 + pool_features, H, W)."""

    def __init__(self, cin: int, pool_features: int, count_include_pad: bool = True):
        super().__init__()
        self.count_include_pad = bool(count_include_pad)   # the branch pool's divisor
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1 = BasicConv2d(cin, 48, 1)
        self.branch5x5_2 = BasicConv2d(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x):
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        bp = self.branch_pool(_avg3(x, self.count_include_pad))
        return _cat([b1, b5, b3, bp])


class InceptionB(Module):
    """Grid reduction 35 -> 17 (Mixed_6a): 3x3/2 | 1x1-3x3-3x3/2 | maxpool 3x3/2,
    (N, cin, H, W) -> (N, 480 + cin, (H-3)//2 + 1, (W-3)//2 + 1)."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x):
        b3 = self.branch3x3(x)
        bd = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return _cat([b3, bd, F.max_pool2d(x, 3, 2)])


class InceptionC(Module):
    """17x17 module with factorised 7x7 convolutions (1x7 then 7x1), Mixed_6b..6e:
    1x1 | 1x1-1x7-7x1 | 1x1-7x1-1x7-7x1-1x7 | avgpool-1x1, (N, cin, H, W) -> (N, 768, H, W)."""

    def __init__(self, cin: int, channels_7x7: int, count_include_pad: bool = True):
        super().__init__()
        self.count_include_pad = bool(count_include_pad)   # the branch pool's divisor
        c7 = channels_7x7
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x):
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = x
        for i in range(1, 6):
            bd = getattr(self, f"branch7x7dbl_{i}")(bd)
        bp = self.branch_pool(_avg3(x, self.count_include_pad))
        return _cat([b1, b7, bd, bp])


class InceptionD(Module):
    """Grid reduction 17 -> 8 (Mixed_7a): 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool 3x3/2,
    (N, cin, H, W) -> (N, 512 + cin, (H-3)//2 + 1, (W-3)//2 + 1)."""

    def __init__(self, cin: int):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, 1)
        self.branch3x3_2 = BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x):
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = x
        for i in range(1, 5):
            b7 = getattr(self, f"branch7x7x3_{i}")(b7)
        return _cat([b3, b7, F.max_pool2d(x, 3, 2)])


class InceptionE(Module):
    """8x8 module with expanded filter banks (Mixed_7b, 7c): 1x1 | 1x1-(1x3 & 3x1) |
    1x1-3x3-(1x3 & 3x1) | avgpool-1x1, (N, cin, H, W) -> (N, 2048, H, W)."""

    def __init__(self, cin: int, count_include_pad: bool = True):
        super().__init__()
        self.count_include_pad = bool(count_include_pad)   # the branch pool's divisor
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, 1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x):
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = _cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)])
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = _cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)])
        bp = self.branch_pool(_avg3(x, self.count_include_pad))
        return _cat([b1, b3, bd, bp])


class InceptionAux(Module):
    """Auxiliary classifier on the 17x17 grid (training only): avgpool 5x5/3 - 1x1 (128) -
    5x5 (768) - global average - fc, (N, cin, 17, 17) -> (N, num_classes)."""

    def __init__(self, cin: int, num_classes: int):
        super().__init__()
        self.conv0 = BasicConv2d(cin, 128, 1)
        self.conv1 = BasicConv2d(128, 768, 5)
        self.fc = Linear(768, num_classes)

    def forward(self, x):
        x = F.avg_pool2d(x, 5, 3)
        x = self.conv1(self.conv0(x))
        x = adaptive_avg_pool2d(x, 1)
        return self.fc(F.flatten(x, 1))
