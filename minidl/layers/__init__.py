"""Layers: stateful Modules that own their parameters and call one stateless function."""
from minidl.layers.module import Module, Sequential, check_input  # noqa: F401
from minidl.layers.linear import Linear, Flatten  # noqa: F401
from minidl.layers.activation import (  # noqa: F401
    ReLU, LeakyReLU, Sigmoid, Tanh, Softmax, LogSoftmax, Dropout,
)
from minidl.layers.conv import Conv2d  # noqa: F401
from minidl.layers.pooling import MaxPool2d, AvgPool2d, GlobalAvgPool2d  # noqa: F401
from minidl.layers.normalization import BatchNorm1d, BatchNorm2d  # noqa: F401
from minidl.layers.lrn import LocalResponseNorm  # noqa: F401,E402
from minidl.layers.adaptive_pooling import AdaptiveAvgPool2d  # noqa: F401,E402
from minidl.layers.blocks import (  # noqa: F401,E402
    BasicBlock, Bottleneck, BasicConv2d, InceptionA, InceptionB, InceptionC, InceptionD,
    InceptionE, InceptionAux,
)
