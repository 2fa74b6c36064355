"""Model zoo: ImageNet architectures with torchvision's layouts and parameter names, and small
ResNets for 28x28 images.

>>> from minidl.models import resnet50, get_model
>>> model = get_model("resnet50").eval()       # then minidl.convert.load_weights(model, path)
"""
from __future__ import annotations

from minidl.models.alexnet import AlexNet, alexnet
from minidl.models.googlenet import GoogLeNet, googlenet
from minidl.models.inception import Inception3, inception_v3
from minidl.models.keras_inception import KerasInception3, keras_inception_v3
from minidl.models.keras_resnet import KerasResNet, keras_resnet50
from minidl.models.resnet import (ResNet, SmallResNet, resnet8, resnet18, resnet20, resnet34,
                                  resnet50, resnet101, resnet152)

__all__ = ["AlexNet", "GoogLeNet", "Inception3", "ResNet", "SmallResNet", "alexnet",
           "googlenet", "inception_v3",
           "resnet8", "resnet18", "resnet20", "resnet34", "resnet50", "resnet101", "resnet152",
           "MODELS", "get_model"]
# Keras's variants (load Keras .h5 weights: minidl.models.keras; downloads: minidl.models.hub)
__all__ += ["KerasInception3", "KerasResNet", "keras_inception_v3", "keras_resnet50"]

MODELS = {f.__name__: f for f in (alexnet, resnet18, resnet34, resnet50, resnet101, resnet152,
                                  inception_v3, googlenet, resnet8, resnet20)}


def get_model(name: str, **kwargs):
    """Build the architecture ``name`` (a key of :data:`MODELS`) with random weights."""
    if name not in MODELS:
        raise ValueError(f"get_model: unknown model {name!r}; choose one of "
                         f"{', '.join(sorted(MODELS))}")
    return MODELS[name](**kwargs)
