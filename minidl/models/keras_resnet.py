"""ResNet-50 as Keras builds it (``keras.applications.ResNet50``), so that Keras's ImageNet
weights (``resnet50_weights_tf_dim_ordering_tf_kernels.h5``, converted from the original
Caffe model of He et al.) load into it with :func:`minidl.models.keras.load_keras_weights`.

It is ResNet v1, not torchvision's "v1.5":

* a downsampling block strides in its FIRST 1x1 convolution (torchvision: in the 3x3);
* every convolution has a bias (torchvision: none, the batch norm's beta does that job);
* batch norm epsilon is 1.001e-5 (torchvision: 1e-5);
* the stem is ZeroPadding(3) + conv 7x7/2 (valid) and ZeroPadding(1) + max pool 3x3/2
  (valid): the same as torchvision's padded conv and pool, since the pool's input is a ReLU
  output (>= 0), where zero padding and -inf padding give the same maxima;
* the first block of every stage, conv2's included, has a projection shortcut.

Module names follow torchvision's (``conv1, bn1, layer1.0.conv1, layer1.0.downsample.0,
fc``), so everything written for :class:`~minidl.models.resnet.ResNet` (``features``,
:func:`minidl.fuse`) works; the Keras layer names are mapped in :mod:`minidl.models.keras`.
Input (N, 3, H, W) in Keras's "caffe" preprocessing (BGR, mean subtracted, 0..255 scale: see
:mod:`minidl.data.imagenet`); output logits (N, num_classes): Keras's model applies a softmax
on top (``classifier_activation="softmax"``), minidl returns the logits.
"""
from __future__ import annotations

from minidl.layers.activation import ReLU
from minidl.layers.blocks import Bottleneck
from minidl.layers.conv import Conv2d
from minidl.layers.linear import Linear
from minidl.layers.module import Module, Sequential
from minidl.layers.normalization import BatchNorm2d
from minidl.models.resnet import ResNet

__all__ = ["KerasBottleneck", "KerasResNet", "keras_resnet50", "KERAS_RESNET_EPS"]

KERAS_RESNET_EPS = 1.001e-5   # keras.applications.resnet: BatchNormalization(epsilon=1.001e-5)


class KerasBottleneck(Bottleneck):
    """Keras's ``block1``: 1x1 (with the stride) - 3x3 - 1x1 expand by 4, biases on all three,
    and a conv1x1(stride)-BN projection shortcut when ``projection``:
    (N, cin, H, W) -> (N, 4*planes, ceil(H/stride), ceil(W/stride))."""
    expansion = 4    # forward and fusable are Bottleneck's: the same layers, named alike

    def __init__(self, cin: int, planes: int, stride: int = 1, projection: bool = False):
        Module.__init__(self)   # Bottleneck's layers differ (no biases, stride in the 3x3)
        cout = planes * self.expansion
        eps = KERAS_RESNET_EPS
        self.conv1 = Conv2d(cin, planes, 1, stride=stride)
        self.bn1 = BatchNorm2d(planes, eps=eps)
        self.relu1 = ReLU()
        self.conv2 = Conv2d(planes, planes, 3, padding=1)
        self.bn2 = BatchNorm2d(planes, eps=eps)
        self.relu2 = ReLU()
        self.conv3 = Conv2d(planes, cout, 1)
        self.bn3 = BatchNorm2d(cout, eps=eps)
        self.downsample = (Sequential(Conv2d(cin, cout, 1, stride=stride),
                                      BatchNorm2d(cout, eps=eps)) if projection else None)
        self.stride = stride


class KerasResNet(ResNet):
    """Keras's ResNet v1 with :class:`KerasBottleneck` stages (``layers`` blocks each, strides
    1, 2, 2, 2); ``forward`` and ``features`` are :class:`ResNet`'s."""

    def __init__(self, layers=(3, 4, 6, 3), num_classes: int = 1000, in_channels: int = 3):
        Module.__init__(self)
        if len(layers) != 4:
            raise ValueError(f"KerasResNet: layers must give 4 stage depths, got {layers!r}")
        self.conv1 = Conv2d(in_channels, 64, 7, stride=2, padding=3)
        self.bn1 = BatchNorm2d(64, eps=KERAS_RESNET_EPS)
        self.relu = ReLU()
        cin = 64
        for i, (n, planes) in enumerate(zip(layers, (64, 128, 256, 512))):
            stride = 1 if i == 0 else 2
            blocks = [KerasBottleneck(cin, planes, stride, projection=True)]
            cin = planes * KerasBottleneck.expansion
            blocks += [KerasBottleneck(cin, planes) for _ in range(1, n)]
            setattr(self, f"layer{i + 1}", Sequential(*blocks))
        self.fc = Linear(cin, num_classes)


def keras_resnet50(num_classes: int = 1000, **kw) -> KerasResNet:
    """Keras's ResNet50: 25,583,592 parameters (Keras's ``count_params()`` says 25,636,712: it
    counts the batch norms' moving statistics too; torchvision's ResNet-50 has 25,557,032, the
    difference being the convolution biases and conv2's projection)."""
    return KerasResNet((3, 4, 6, 3), num_classes, **kw)
