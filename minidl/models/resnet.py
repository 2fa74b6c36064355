"""Residual networks (He et al. 2016, "Deep Residual Learning for Image Recognition").

ImageNet ResNets with torchvision's layout and module names (``conv1, bn1, layer1..layer4,
fc``), so converted torchvision weights load by name (see :mod:`minidl.convert`)::

    (N, 3, 224, 224) -conv7x7/2-BN-ReLU-maxpool3x3/2-> (N, 64, 56, 56)
    -layer1-> 56x56 -layer2-> 28x28 -layer3-> 14x14 -layer4-> 7x7 -global avg-> fc -> (N, 1000)

and the small CIFAR-style ResNets of the paper's section 4.2 (depth 6n + 2: three stages of n
BasicBlocks with 16, 32, 64 channels) for 28x28 one-channel images such as MNIST.
"""
from __future__ import annotations

from minidl import functions as F
from minidl.layers.activation import ReLU
from minidl.layers.blocks import BasicBlock, Bottleneck
from minidl.layers.conv import Conv2d
from minidl.layers.linear import Linear
from minidl.layers.module import Module, Sequential
from minidl.layers.normalization import BatchNorm2d

__all__ = ["ResNet", "SmallResNet", "resnet18", "resnet34", "resnet50", "resnet101",
           "resnet152", "resnet8", "resnet20"]


def _stage(block, cin, planes, blocks, stride):
    layers = [block(cin, planes, stride)]
    cin = planes * block.expansion
    layers += [block(cin, planes) for _ in range(1, blocks)]
    return Sequential(*layers), cin


class ResNet(Module):
    """An ImageNet ResNet: ``block`` (BasicBlock or Bottleneck) repeated ``layers[i]`` times in
    stage i.  Input (N, in_channels, H, W) with H, W >= 32; output logits (N, num_classes)."""
    fusable = (("conv1", "bn1", "relu"),)   # for minidl.fuse: relu(bn(conv1(x))) in features

    def __init__(self, block, layers, num_classes: int = 1000, in_channels: int = 3):
        super().__init__()
        if len(layers) != 4:
            raise ValueError(f"ResNet: layers must give 4 stage depths, got {layers!r}")
        self.conv1 = Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = BatchNorm2d(64)
        self.relu = ReLU()
        cin = 64
        for i, (n, planes) in enumerate(zip(layers, (64, 128, 256, 512))):
            stage, cin = _stage(block, cin, planes, n, 1 if i == 0 else 2)
            setattr(self, f"layer{i + 1}", stage)
        self.fc = Linear(512 * block.expansion, num_classes)

    def features(self, x):
        """(N, C, H, W) -> the last stage's maps (N, 512*expansion, H/32, W/32)."""
        x = F.max_pool2d(self.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def forward(self, x):
        return self.fc(F.global_avg_pool2d(self.features(x)))


class SmallResNet(Module):
    """CIFAR-style ResNet of depth 6n + 2 (resnet8: n=1, resnet20: n=3) for small images:
    conv3x3(width) - three stages of n BasicBlocks (width, 2*width, 4*width; strides 1, 2, 2) -
    global average - fc.  A 28x28 input gives 28 -> 14 -> 7 maps.  Shortcuts that change shape
    are projections (conv1x1-BN)."""
    fusable = (("conv1", "bn1", "relu"),)   # for minidl.fuse: relu(bn(conv1(x))) in forward

    def __init__(self, depth: int = 20, num_classes: int = 10, in_channels: int = 1,
                 width: int = 16):
        super().__init__()
        if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise ValueError(f"SmallResNet: depth must be 6n + 2 with n >= 1 (8, 14, 20, ...), "
                             f"got {depth!r}")
        n = (depth - 2) // 6
        self.depth = depth
        self.conv1 = Conv2d(in_channels, width, 3, padding=1, bias=False)
        self.bn1 = BatchNorm2d(width)
        self.relu = ReLU()
        cin = width
        for i in range(3):
            stage, cin = _stage(BasicBlock, cin, width * 2 ** i, n, 1 if i == 0 else 2)
            setattr(self, f"layer{i + 1}", stage)
        self.fc = Linear(cin, num_classes)

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(F.global_avg_pool2d(x))

    def extra_repr(self):
        return f"depth={self.depth}"


def resnet18(num_classes: int = 1000, **kw) -> ResNet:
    """ResNet-18: BasicBlocks [2, 2, 2, 2], 11,689,512 parameters."""
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, **kw)


def resnet34(num_classes: int = 1000, **kw) -> ResNet:
    """ResNet-34: BasicBlocks [3, 4, 6, 3], 21,797,672 parameters."""
    return ResNet(BasicBlock, [3, 4, 6, 3], num_classes, **kw)


def resnet50(num_classes: int = 1000, **kw) -> ResNet:
    """ResNet-50: Bottlenecks [3, 4, 6, 3], 25,557,032 parameters."""
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, **kw)


def resnet101(num_classes: int = 1000, **kw) -> ResNet:
    """ResNet-101: Bottlenecks [3, 4, 23, 3], 44,549,160 parameters."""
    return ResNet(Bottleneck, [3, 4, 23, 3], num_classes, **kw)


def resnet152(num_classes: int = 1000, **kw) -> ResNet:
    """ResNet-152: Bottlenecks [3, 8, 36, 3], 60,192,808 parameters."""
    return ResNet(Bottleneck, [3, 8, 36, 3], num_classes, **kw)


def resnet8(num_classes: int = 10, in_channels: int = 1, **kw) -> SmallResNet:
    """8-layer CIFAR-style ResNet for 28x28 (MNIST-like) images."""
    return SmallResNet(8, num_classes, in_channels, **kw)


def resnet20(num_classes: int = 10, in_channels: int = 1, **kw) -> SmallResNet:
    """20-layer CIFAR-style ResNet for 28x28 (MNIST-like) images."""
    return SmallResNet(20, num_classes, in_channels, **kw)
