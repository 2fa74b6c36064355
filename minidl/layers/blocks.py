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
"""
from __future__ import annotations

from minidl import backend as B
from minidl import functions as F
from minidl.autograd import Tensor, is_grad_enabled
from minidl.functions.activation import relu_into
from minidl.functions.adaptive_pooling import adaptive_avg_pool2d
from minidl.layers.conv import Conv2d
from minidl.layers.linear import Linear
from minidl.layers.module import Module, Sequential
from minidl.layers.normalization import BatchNorm2d

__all__ = ["BasicBlock", "Bottleneck", "BasicConv2d", "InceptionA", "InceptionB",
           "InceptionC", "InceptionD", "InceptionE", "InceptionAux", "conv_bn"]


# ------------------------------------------------------------------ conv-BN(-ReLU), fused

def _can_fuse(conv, bn, x) -> bool:
    """Inference only: BN in eval mode, no graph recorded, an input the layers would accept
    (anything else takes the generic path, which also produces the error messages)."""
    if bn.training or is_grad_enabled() or bn.gamma is None:
        return False
    data = x.data if isinstance(x, Tensor) else x
    return (B.is_array(data) and data.ndim == 4 and data.shape[1] == conv.in_channels
            and data.dtype == conv.W.dtype and B.backend_of(data) is B.backend_of(conv.W.data))


def conv_bn(conv, bn, x, relu: bool = True):
    """``relu(bn(conv(x)))`` (or without the ReLU).

    Training, or whenever a graph is recorded, this is exactly the layer calls.  In inference
    (``bn.eval()`` under ``no_grad``) the batch norm is folded into the convolution,

        W' = W * s,  b' = (b - running_mean) * s + beta,   s = gamma / sqrt(running_var + eps)

    and the ReLU is applied in place: one pass over the output instead of four.  A 1x1
    convolution is then a plain matrix product, (OC, C) @ (N, C, H*W), with no im2col copy
    (a stride subsamples x first).  The folding is recomputed at every call (O(parameters)),
    so it can never go stale.
    """
    if not _can_fuse(conv, bn, x):
        y = bn(conv(x))
        return F.relu(y) if relu else y
    xp = B.get_array_module(conv.W.data)
    data = x.data if isinstance(x, Tensor) else x
    dt = data.dtype.type
    s = bn.gamma.data / xp.sqrt(bn.running_var.astype(data.dtype) + dt(bn.eps))
    shift = bn.beta.data - bn.running_mean.astype(data.dtype) * s
    if conv.b is not None:
        shift = shift + conv.b.data * s
    W = conv.W.data * s[:, None, None, None]
    if conv.kernel_size == (1, 1) and conv.padding == (0, 0) and conv.groups == 1:
        sh, sw = conv.stride
        if (sh, sw) != (1, 1):
            data = data[:, :, ::sh, ::sw]
        N, C, H, Wd = data.shape
        x2 = xp.ascontiguousarray(data).reshape(N, C, H * Wd)
        y = xp.matmul(W.reshape(W.shape[0], C), x2).reshape(N, W.shape[0], H, Wd)
        y += shift[:, None, None]
    else:
        y = F.conv2d(data, W, shift, conv.stride, conv.padding, conv.dilation,
                     conv.groups).data
    if relu:
        relu_into(y, y)
    return Tensor(y)


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


def _shortcut(downsample, x):
    if downsample is None:
        return x
    conv, bn = downsample
    return conv_bn(conv, bn, x, relu=False)


def projection(cin, cout, stride):
    """The shortcut that changes shape: conv1x1(stride)-BN (torchvision's ``downsample``)."""
    return Sequential(conv1x1(cin, cout, stride), BatchNorm2d(cout))


class BasicBlock(Module):
    """Two 3x3 convolutions and a shortcut: (N, cin, H, W) -> (N, planes, H/stride, W/stride).

    ``downsample`` is a projection when ``stride != 1`` or ``cin != planes`` (else identity).
    """
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = conv3x3(cin, planes, stride)
        self.bn1 = BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = BatchNorm2d(planes)
        self.downsample = projection(cin, planes, stride) \
            if stride != 1 or cin != planes else None
        self.stride = stride

    def forward(self, x):
        out = conv_bn(self.conv1, self.bn1, x)
        out = conv_bn(self.conv2, self.bn2, out, relu=False)
        return add_relu(out, _shortcut(self.downsample, x))


class Bottleneck(Module):
    """1x1 reduce, 3x3 (with the stride, torchvision's "ResNet v1.5"), 1x1 expand by 4:
    (N, cin, H, W) -> (N, 4*planes, H/stride, W/stride)."""
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = conv1x1(cin, planes)
        self.bn1 = BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn2 = BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, cout)
        self.bn3 = BatchNorm2d(cout)
        self.downsample = projection(cin, cout, stride) if stride != 1 or cin != cout else None
        self.stride = stride

    def forward(self, x):
        out = conv_bn(self.conv1, self.bn1, x)
        out = conv_bn(self.conv2, self.bn2, out)
        out = conv_bn(self.conv3, self.bn3, out, relu=False)
        return add_relu(out, _shortcut(self.downsample, x))


# ------------------------------------------------------------------------------- Inception-v3

class BasicConv2d(Module):
    """conv (no bias) - BN (eps 1e-3) - ReLU: the unit every Inception branch is made of."""

    def __init__(self, cin: int, cout: int, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = Conv2d(cin, cout, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return conv_bn(self.conv, self.bn, x)


def _cat(branches):
    return F.concatenate(branches, axis=1)


def _avg3(x):
    # torchvision: F.avg_pool2d(x, 3, stride=1, padding=1), count_include_pad=True
    return F.avg_pool2d(x, 3, 1, 1)


class InceptionA(Module):
    """35x35 module (Mixed_5b..5d): 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool-1x1,
    (N, cin, H, W) -> (N, 224 + pool_features, H, W)."""

    def __init__(self, cin: int, pool_features: int):
        super().__init__()
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
        bp = self.branch_pool(_avg3(x))
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

    def __init__(self, cin: int, channels_7x7: int):
        super().__init__()
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
        bp = self.branch_pool(_avg3(x))
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

    def __init__(self, cin: int):
        super().__init__()
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
        bp = self.branch_pool(_avg3(x))
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
