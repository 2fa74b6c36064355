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

from minidl.models.inception import Inception3

__all__ = ["KerasInception3", "keras_inception_v3"]


class KerasInception3(Inception3):
    """Keras's InceptionV3: :class:`Inception3` with the branch pools' divisor counting only
    real pixels, no auxiliary head, no dropout, no input transform.  23,834,568 parameters, as
    torchvision's without the auxiliary head (a gamma per batch norm included, which Keras's
    weights fix to 1; Keras's ``count_params()`` says 23,851,784: it counts the moving
    statistics instead of the gammas)."""

    def __init__(self, num_classes: int = 1000):
        super().__init__(num_classes, aux_logits=False, transform_input=False, dropout=0.0,
                         count_include_pad=False)


def keras_inception_v3(num_classes: int = 1000) -> KerasInception3:
    """Inception-v3 as ``keras.applications.InceptionV3`` builds it (see the module doc)."""
    return KerasInception3(num_classes)
