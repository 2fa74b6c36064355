"""The Modules that :func:`minidl.fuse` puts in a model: a run of layers as one op.

A fused Module takes the first layer's slot and an :class:`Absorbed` placeholder takes each
later layer's slot.  Both share the original layers' parameter and buffer tables (the same
objects), so the model keeps its parameters (same Parameter objects, same order), its
``state_dict`` keys ("1.gamma", "1.running_mean") and its running statistics: a checkpoint
saved before fusing loads after, and the other way round.  ``train()``/``eval()`` and
attribute reads (``model[1].running_mean``, ``model[0].W``) reach the original layers.

Each fused Module checks, at every call, the conditions under which its fused op runs (the
backend, the input's shape, what the op has a fast path for); elsewhere it runs the original
layers one by one, exactly as the unfused model would:

    FusedConvBatchNormMaxPool2d  Conv2d 3x3 -> BatchNorm2d [-> ReLU] -> MaxPool2d(2), one op
    FusedBatchNormMaxPool2d      BatchNorm2d [-> ReLU] -> MaxPool2d(2), one op
    MaxPool2dReLU                ReLU -> MaxPool2d run as MaxPool2d -> ReLU (same values)
    FusedConvBatchNorm2d         Conv2d -> BatchNorm2d [-> ReLU], folded in inference
"""
from __future__ import annotations

import functools

from minidl import backend as B
from minidl import functions as F
from minidl.autograd import Tensor, is_grad_enabled
from minidl.functions.activation import relu_into
from minidl.functions.arguments import output_hw
from minidl.functions.conv_bn_pool import fused_path
from minidl.layers.module import Module, check_input

__all__ = ["Absorbed", "Fused", "FusedConvBatchNormMaxPool2d", "FusedBatchNormMaxPool2d",
           "MaxPool2dReLU", "FusedConvBatchNorm2d"]


def _forwarded_training(attribute):
    """A ``training`` property that reads the first of the layers in ``attribute`` and sets
    them all (``Module.train`` sets ``training`` on every module it reaches)."""
    def get(self):
        return self.__dict__[attribute][0].training

    def set_(self, mode):
        for layer in self.__dict__.get(attribute, ()):   # none yet inside Module.__init__
            layer.train(mode)
    return property(get, set_)


class _Wrapper(Module):
    """Shares the parameter and buffer tables of ``layers[0]`` and forwards attribute reads
    and writes to it; has no sub-modules of its own (the layers are not registered, so that
    each parameter keeps its one name)."""

    def __init__(self, attribute, layers):
        super().__init__()
        object.__setattr__(self, attribute, tuple(layers))
        object.__setattr__(self, "_parameters", layers[0]._parameters)
        object.__setattr__(self, "_buffers", layers[0]._buffers)

    def _target(self):
        raise NotImplementedError

    def __getattr__(self, name):
        if name.startswith("__") or "_parameters" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self._target(), name)

    def __setattr__(self, name, value):
        setattr(self._target(), name, value)


class Absorbed(_Wrapper):
    """The slot of a layer that runs inside a fused Module: the identity, holding ``layer``'s
    parameters and buffers under the slot's name (so ``state_dict`` keys stay the same)."""
    training = _forwarded_training("layers")

    def __init__(self, layer: Module, into: str = "the fused module before it"):
        super().__init__("layers", (layer,))
        object.__setattr__(self, "into", into)

    @property
    def layer(self) -> Module:
        return self.__dict__["layers"][0]

    def _target(self):
        return self.layer

    def forward(self, x):
        return x

    def extra_repr(self):
        return f"{self.layer!r}, runs inside {self.into}"


class Fused(_Wrapper):
    """A run of ``layers`` as one op; holds the first layer's parameters and buffers."""
    training = _forwarded_training("layers")

    def __init__(self, *layers: Module):
        super().__init__("layers", layers)

    def _target(self):
        return self.__dict__["layers"][0]

    def extra_repr(self):
        return " -> ".join(repr(layer) for layer in self.layers)


def _host_float_4d(x):
    """The array of x when it is a floating (N, C, H, W) NumPy array, else None."""
    data = x.data if isinstance(x, Tensor) else x
    if B.is_array(data) and B.backend_of(data).name == "numpy" and data.ndim == 4 \
            and data.dtype.kind == "f":
        return data
    return None


class FusedBatchNormMaxPool2d(Fused):
    """BatchNorm2d [-> ReLU] -> MaxPool2d(2, 2) as one op,
    :func:`minidl.functions.batch_norm_max_pool2d`: the same values, normalising only the pooled
    quarter, and its backward one pass over the input (MNIST CNN: about 1.5 ms less per step on
    a 2-core CPU).  The ReLU, if any, runs after the pool.  Only on NumPy for an (N, C, H, W)
    floating input with H and W even and positive; elsewhere the layers run one by one (the
    ReLU after the pool, as :class:`MaxPool2dReLU`)."""

    def __init__(self, bn, relu, pool):
        super().__init__(*(layer for layer in (bn, relu, pool) if layer is not None))
        object.__setattr__(self, "bn", bn)
        object.__setattr__(self, "relu", relu)
        object.__setattr__(self, "pool", pool)

    def takes_fused_op(self, x) -> bool:
        """Whether a call on ``x`` runs the one op (checked at every call)."""
        data = _host_float_4d(x)
        return data is not None and data.shape[2] > 0 and data.shape[3] > 0 \
            and data.shape[2] % 2 == 0 and data.shape[3] % 2 == 0

    def forward(self, x):
        if self.takes_fused_op(x):
            op = functools.partial(F.batch_norm_max_pool2d, relu=self.relu is not None)
            return self.bn.normalise(x, op)
        y = self.pool(self.bn(x))
        return self.relu(y) if self.relu is not None else y


class FusedConvBatchNormMaxPool2d(Fused):
    """Conv2d (3x3, stride 1, no bias, dilation or groups) -> BatchNorm2d [-> ReLU] ->
    MaxPool2d(2, 2) as one op, :func:`minidl.functions.conv2d_batch_norm_max_pool2d`: the same
    values to rounding (the statistics are summed in another order); the convolution's output
    stays in the layout it is made in, window by window, and is never put into NCHW (MNIST CNN:
    about 4 ms less per step on a 2-core CPU).  Only on NumPy where the fused op has a path for
    the shapes (:func:`minidl.functions.conv_bn_pool.fused_path`: where conv2d would take
    Winograd or one product per image) and the conv's output has an even height and width;
    elsewhere the conv runs, then :class:`FusedBatchNormMaxPool2d`'s rule."""

    def __init__(self, conv, bn, relu, pool):
        super().__init__(*(layer for layer in (conv, bn, relu, pool) if layer is not None))
        object.__setattr__(self, "conv", conv)
        object.__setattr__(self, "bn", bn)
        object.__setattr__(self, "relu", relu)
        object.__setattr__(self, "after_conv", FusedBatchNormMaxPool2d(bn, relu, pool))

    def takes_fused_op(self, x) -> bool:
        """Whether a call on ``x`` runs the one op (checked at every call)."""
        conv = self.conv
        data = _host_float_4d(x)
        if data is None or data.shape[1] != conv.in_channels:
            return False
        (ph, pw), OC = conv.padding, conv.out_channels
        OH, OW = data.shape[2] + 2 * ph - 2, data.shape[3] + 2 * pw - 2
        return OH > 0 and OW > 0 and OH % 2 == 0 and OW % 2 == 0 \
            and fused_path("numpy", conv.in_channels, OC, OH, OW) is not None

    def forward(self, x):
        if not self.takes_fused_op(x):
            return self.after_conv(self.conv(x))
        conv, bn = self.conv, self.bn
        C = conv.in_channels
        x = check_input(conv, x, f"with {C} channels (N, {C}, H, W)", ndim=4, sizes={1: C})
        output_hw(repr(conv), x.shape[2:], conv.kernel_size, conv.stride, conv.padding,
                  conv.dilation)
        bn.count_batch(x)
        return F.conv2d_batch_norm_max_pool2d(
            x, conv.W, bn.running_mean, bn.running_var, bn.gamma, bn.beta,
            padding=conv.padding, training=bn.training, momentum=bn.momentum, eps=bn.eps,
            relu=self.relu is not None)


class MaxPool2dReLU(Fused):
    """ReLU -> MaxPool2d run as MaxPool2d -> ReLU.  The two orders give the same values and the
    same gradients, bit for bit: ReLU keeps the order of its inputs, so the window's first
    maximum is the same element (or, when it is <= 0, ReLU zeroes both its value and its
    gradient either way).  After the pool, ReLU touches a quarter as many values (2x2
    windows): in the MNIST CNN's step that saves about 1 ms of 36 on a 2-core CPU."""

    def __init__(self, relu, pool):
        super().__init__(relu, pool)

    def forward(self, x):
        relu, pool = self.layers
        return relu(pool(x))


class FusedConvBatchNorm2d(Fused):
    """Conv2d -> BatchNorm2d [-> ReLU], with the batch norm folded into the convolution in
    inference.

    Training, or whenever a graph is recorded, this is exactly the layer calls.  In inference
    (the BatchNorm2d in eval mode, under ``no_grad``, with gamma and beta) the batch norm is
    folded into the convolution,

        W' = W * s,  b' = (b - running_mean) * s + beta,   s = gamma / sqrt(running_var + eps)

    and the ReLU is applied in place: one pass over the output instead of four.  A 1x1
    convolution is then a plain matrix product, (OC, C) @ (N, C, H*W), with no im2col copy
    (a stride subsamples x first).  The folding is recomputed at every call (O(parameters)),
    so it can never go stale.
    """

    def __init__(self, conv, bn, relu=None):
        super().__init__(*(layer for layer in (conv, bn, relu) if layer is not None))
        object.__setattr__(self, "conv", conv)
        object.__setattr__(self, "bn", bn)
        object.__setattr__(self, "relu", relu)

    def takes_folded_path(self, x) -> bool:
        """Inference only: BN in eval mode, no graph recorded, an input the layers would
        accept (anything else takes the layer calls, which also produce the error
        messages)."""
        conv, bn = self.conv, self.bn
        if bn.training or is_grad_enabled() or bn.gamma is None:
            return False
        data = x.data if isinstance(x, Tensor) else x
        return (B.is_array(data) and data.ndim == 4 and data.shape[1] == conv.in_channels
                and data.dtype == conv.W.dtype
                and B.backend_of(data) is B.backend_of(conv.W.data))

    def forward(self, x):
        if not self.takes_folded_path(x):
            y = self.bn(self.conv(x))
            return self.relu(y) if self.relu is not None else y
        conv, bn = self.conv, self.bn
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
        if self.relu is not None:
            relu_into(y, y)
        return Tensor(y)
