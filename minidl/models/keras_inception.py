"""Inception-v3 as Keras builds it (``keras.applications.InceptionV3``), so that Keras's
ImageNet weights (``inception_v3_weights_tf_dim_ordering_tf_kernels.h5``) load into it with
:func:`minidl.models.keras.load_keras_weights`.

Keras's network is the same graph as torchvision's :class:`~minidl.models.inception.Inception3`
(both come from TF-slim's): the same convolutions in the same branches, concatenated in the same
order, with 'valid' / 'same' paddings that are torchvision's explicit ones.  It differs in:

* the average pools of the branches (3x3, stride 1, 'same') divide by the number of REAL pixels
  under the window (TensorFlow's rule; torchvision's ``count_include_pad=True`` divides by 9
  at the borders too);
* its batch norms have no gamma (``scale=False``; epsilon 1e-3 as torchvision's): minidl keeps a
  gamma, which the loader sets to 1;
* no auxiliary head and no dropout before the classifier;
* input scaling: Keras's "tf" preprocessing, x / 127.5 - 1 in RGB (see
  :mod:`minidl.data.imagenet`), so no ``transform_input``.

Module names are torchvision's (``Conv2d_1a_3x3.conv``, ``Mixed_5b.branch1x1.bn``, ``fc``).
Input (N, 3, H, W), H, W >= 75; output logits (N, num_classes) (Keras applies a softmax).
"""
from __future__ import annotations

from minidl import functions as F
from minidl.layers.activation import Dropout
from minidl.layers.blocks import (BasicConv2d, InceptionA, InceptionB, InceptionC, InceptionD,
                                  InceptionE)
from minidl.layers.linear import Linear
from minidl.layers.module import Module
from minidl.models.inception import Inception3

__all__ = ["KerasInceptionA", "KerasInceptionC", "KerasInceptionE", "KerasInception3",
           "keras_inception_v3"]


def _avg3_same(x):
    # Keras AveragePooling2D(3, strides=1, padding="same"): padded zeros are not counted
    return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)


def _cat(branches):
    return F.concatenate(branches, axis=1)


class KerasInceptionA(InceptionA):
    """:class:`InceptionA` with Keras's average pool (padding excluded from the mean)."""

    def forward(self, x):
        b1 = self.branch1x1(x)
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return _cat([b1, b5, b3, self.branch_pool(_avg3_same(x))])


class KerasInceptionC(InceptionC):
    """:class:`InceptionC` with Keras's average pool (padding excluded from the mean)."""

    def forward(self, x):
        b1 = self.branch1x1(x)
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = x
        for i in range(1, 6):
            bd = getattr(self, f"branch7x7dbl_{i}")(bd)
        return _cat([b1, b7, bd, self.branch_pool(_avg3_same(x))])


class KerasInceptionE(InceptionE):
    """:class:`InceptionE` with Keras's average pool (padding excluded from the mean)."""

    def forward(self, x):
        b1 = self.branch1x1(x)
        b3 = self.branch3x3_1(x)
        b3 = _cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)])
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = _cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)])
        return _cat([b1, b3, bd, self.branch_pool(_avg3_same(x))])


class KerasInception3(Inception3):
    """Keras's InceptionV3 (no auxiliary head, no dropout, no input transform); the forward is
    :class:`Inception3`'s.  23,834,568 parameters, as torchvision's without the auxiliary head
    (a gamma per batch norm included, which Keras's weights fix to 1; Keras's ``count_params()``
    says 23,851,784: it counts the moving statistics instead of the gammas)."""

    def __init__(self, num_classes: int = 1000):
        Module.__init__(self)
        self.aux_logits, self.transform_input = False, False
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = KerasInceptionA(192, pool_features=32)
        self.Mixed_5c = KerasInceptionA(256, pool_features=64)
        self.Mixed_5d = KerasInceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = KerasInceptionC(768, channels_7x7=128)
        self.Mixed_6c = KerasInceptionC(768, channels_7x7=160)
        self.Mixed_6d = KerasInceptionC(768, channels_7x7=160)
        self.Mixed_6e = KerasInceptionC(768, channels_7x7=192)
        self.AuxLogits = None
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = KerasInceptionE(1280)
        self.Mixed_7c = KerasInceptionE(2048)
        self.dropout = Dropout(0.0)
        self.fc = Linear(2048, num_classes)


def keras_inception_v3(num_classes: int = 1000) -> KerasInception3:
    """Inception-v3 as ``keras.applications.InceptionV3`` builds it (see the module doc)."""
    return KerasInception3(num_classes)
