"""Fusion as an explicit model transformation: ``model = minidl.fuse(model)``.

A model's layers each run their own op; :func:`fuse` rewrites the model once, in place, so that
some runs of layers run as one op (the fused Modules of :mod:`minidl.layers.fused`):

* in every :class:`~minidl.layers.Sequential`, a run of layers of exactly these types (not
  subclasses, no ``forward`` replaced on the instance):

  - Conv2d (3x3, stride 1, no bias, dilation or groups) -> BatchNorm2d [-> ReLU] ->
    MaxPool2d(2, 2): :class:`~minidl.layers.fused.FusedConvBatchNormMaxPool2d`;
  - BatchNorm2d [-> ReLU] -> MaxPool2d(2, 2): :class:`~minidl.layers.fused.FusedBatchNormMaxPool2d`;
  - ReLU -> MaxPool2d: :class:`~minidl.layers.fused.MaxPool2dReLU` (the pool first, the same
    values and gradients bit for bit);

* in a block whose class declares ``fusable`` (the class that defines its ``forward``; a
  subclass with its own ``forward`` must declare it again), each listed
  ``(conv, bn[, relu])`` of attribute paths, e.g. ``("conv1", "bn1", "relu1")`` or
  ``("downsample.0", "downsample.1")``: a Conv2d whose output goes only into the BatchNorm2d
  (and that into the ReLU), as the block's ``forward`` calls them,
  ``relu(bn(conv(x)))``.  They become :class:`~minidl.layers.fused.FusedConvBatchNorm2d`,
  which folds the batch norm into the convolution in inference.

The fused Module takes the first layer's slot and an :class:`~minidl.layers.fused.Absorbed`
placeholder (the identity) each later one's; both share the original layers' Parameter
objects and buffers, so ``parameters()`` (objects and order), ``state_dict()`` keys and values
and the running statistics are the same before and after, and a checkpoint saved from the
fused or the unfused model loads into either.  Each fused Module checks at every call whether
its op has a fast path for the input (backend, shapes) and otherwise runs the original layers
one by one, so a fused model computes what the unfused one does (the same values, or the same
to rounding where statistics are summed in another order), in train and in eval mode.

:func:`plan` says what :func:`fuse` would do, and why a candidate run is left alone (a
subclass, a replaced ``forward``); ``fuse`` logs the same lines on the ``minidl.fusion``
logger at INFO level.  Fusing twice changes nothing more.  Slice or rearrange a Sequential
before fusing it: a fused Module runs its whole run, whichever slots are kept with it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from minidl.layers.activation import ReLU
from minidl.layers.conv import Conv2d
from minidl.layers.fused import (
    Absorbed, FusedBatchNormMaxPool2d, FusedConvBatchNorm2d, FusedConvBatchNormMaxPool2d,
    MaxPool2dReLU,
)
from minidl.layers.module import Module, Sequential
from minidl.layers.normalization import BatchNorm2d
from minidl.layers.pooling import MaxPool2d

__all__ = ["fuse", "plan", "Fusion"]

logger = logging.getLogger("minidl.fusion")


@dataclass(frozen=True)
class Fusion:
    """One run of layers that :func:`fuse` fuses (``module`` names the fused Module) or leaves
    alone (``module`` is "" and ``reason`` says why)."""
    paths: tuple        # the layers' dotted names in the model, e.g. ("0", "1", "2", "3")
    layers: tuple       # their class names
    module: str         # the fused Module's class name, "" when not fused
    reason: str = ""

    @property
    def fused(self) -> bool:
        return bool(self.module)

    def __str__(self):
        run = " -> ".join(f"{p} {t}" for p, t in zip(self.paths, self.layers))
        if self.fused:
            return f"{run}: fused as {self.module}"
        return f"{run}: not fused, {self.reason}"


def fuse(model: Module) -> Module:
    """Replace matched runs of layers in ``model`` by fused Modules, in place; returns
    ``model`` (see the module docstring for the runs, and :func:`plan`).  Parameters,
    ``state_dict`` keys, values and running statistics stay the same objects and names."""
    if not isinstance(model, Module):
        raise TypeError(f"fuse: model must be a Module, got {type(model).__name__}")
    for fusion, slots, build in _find(model):
        logger.info("%s", fusion)
        if build is None:
            continue
        layers = [getattr(parent, name) for parent, name in slots]
        first_path = fusion.paths[0] or type(model).__name__
        fused = build(*layers)
        slots[0][0].set_submodule(slots[0][1], fused)
        for (parent, name), layer in zip(slots[1:], layers[1:]):
            parent.set_submodule(name, Absorbed(layer, into=f"{first_path} ({fusion.module})"))
    return model


def plan(model: Module) -> list[Fusion]:
    """What :func:`fuse` would fuse in ``model``, in order, and the candidate runs it leaves
    alone with the reason; ``model`` is not changed."""
    if not isinstance(model, Module):
        raise TypeError(f"plan: model must be a Module, got {type(model).__name__}")
    return [fusion for fusion, _, _ in _find(model)]


# ----------------------------------------------------------------------------- matching

def _plain(layer, cls) -> bool:
    """Whether ``layer`` is exactly a ``cls`` (not a subclass) with its own ``forward`` (not
    one replaced on the instance, as :meth:`Module.summary` does to record shapes)."""
    return type(layer) is cls and "forward" not in vars(layer)


def _kind(layer, cls) -> bool:
    """Whether ``layer`` is a ``cls`` of any kind: a candidate, fused only when plain."""
    return isinstance(layer, cls)


def _not_plain(path, layer, cls) -> str:
    if type(layer) is not cls:
        return f"{path} is {type(layer).__name__}, a subclass of {cls.__name__}"
    return f"{path} has its forward replaced on the instance"


def _conv_fits(conv) -> bool:
    """A 3x3 stride-1 convolution without bias, dilation or groups."""
    return (conv.b is None and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.dilation == (1, 1) and conv.groups == 1)


def _bn_pool_run(layers, j, is_):
    """The classes of the BatchNorm2d [-> ReLU] -> MaxPool2d(2, 2) run at ``layers[j]``, or
    None."""
    n = len(layers)
    if not is_(layers[j], BatchNorm2d):
        return None
    run = [BatchNorm2d]
    if j + 1 < n and is_(layers[j + 1], ReLU):
        run.append(ReLU)
    k = j + len(run)
    if k < n and is_(layers[k], MaxPool2d) and \
            (layers[k].kernel_size, layers[k].stride, layers[k].padding) == \
            ((2, 2), (2, 2), (0, 0)):
        return run + [MaxPool2d]
    return None


def _with_relu(build):
    """``build(first..., relu or None, last)`` from the run's layers with or without a ReLU."""
    def make(*layers):
        relu = next((layer for layer in layers if type(layer) is ReLU), None)
        rest = [layer for layer in layers if layer is not relu]
        return build(*rest[:-1], relu, rest[-1])
    return make


def _sequential_run(layers, i, is_):
    """(classes of the run at ``layers[i]``, the fused Module's class, its builder) or None."""
    n = len(layers)
    if is_(layers[i], Conv2d) and _conv_fits(layers[i]) and i + 1 < n:
        run = _bn_pool_run(layers, i + 1, is_)
        if run and layers[i + 1].num_features == layers[i].out_channels:
            return ([Conv2d] + run, FusedConvBatchNormMaxPool2d,
                    _with_relu(FusedConvBatchNormMaxPool2d))
    run = _bn_pool_run(layers, i, is_)
    if run:
        return run, FusedBatchNormMaxPool2d, _with_relu(FusedBatchNormMaxPool2d)
    if i + 1 < n and is_(layers[i], ReLU) and is_(layers[i + 1], MaxPool2d):
        return [ReLU, MaxPool2d], MaxPool2dReLU, MaxPool2dReLU
    return None


def _join(prefix, name):
    return f"{prefix}.{name}" if prefix else name


def _in_sequential(prefix, seq, claimed):
    """The runs in one Sequential: (Fusion, slots, builder or None)."""
    names = list(seq._modules)
    layers = [seq._modules[name] for name in names]
    found, i = [], 0
    while i < len(layers):
        match = _sequential_run(layers, i, _plain)
        if match:
            classes, cls, build = match
            count = len(classes)
            paths = tuple(_join(prefix, name) for name in names[i:i + count])
            found.append((Fusion(paths, tuple(c.__name__ for c in classes), cls.__name__),
                          [(seq, name) for name in names[i:i + count]], build))
            claimed.update(id(layer) for layer in layers[i:i + count])
            i += count
            continue
        loose = _sequential_run(layers, i, _kind)
        if loose:
            classes, cls, _ = loose
            odd = [(k, c) for k, c in zip(range(i, i + len(classes)), classes)
                   if not _plain(layers[k], c) and id(layers[k]) not in claimed]
            if odd:
                claimed.update(id(layers[k]) for k, _ in odd)
                run = range(i, i + len(classes))
                paths = tuple(_join(prefix, names[k]) for k in run)
                reason = "; ".join(_not_plain(_join(prefix, names[k]), layers[k], c)
                                   for k, c in odd)
                found.append((Fusion(paths, tuple(type(layers[k]).__name__ for k in run), "",
                                     f"{reason} (its forward may differ)"), None, None))
        i += 1
    return found


def _resolve(module, path):
    """(parent, name, layer) for a dotted attribute path, or None when a step is missing or
    None (an optional layer such as a block's ``downsample``)."""
    parent = module
    *steps, last = path.split(".")
    for step in steps:
        parent = getattr(parent, step, None)
        if not isinstance(parent, Module):
            return None
    layer = getattr(parent, last, None)
    return None if layer is None else (parent, last, layer)


def _forward_owner(module):
    return next(c for c in type(module).__mro__ if "forward" in c.__dict__)


def _in_block(prefix, module, claimed):
    """The (conv, bn[, relu]) entries that ``module``'s class declares in ``fusable``."""
    owner = _forward_owner(module)
    declared = owner.__dict__.get("fusable")
    inherited = getattr(type(module), "fusable", None)
    if declared is None or "forward" in vars(module):
        if inherited is None:
            return []
        why = (f"{prefix or type(module).__name__} has its forward replaced on the instance"
               if "forward" in vars(module) else
               f"{type(module).__name__} defines its own forward without declaring fusable")
        paths = tuple(_join(prefix, p) for entry in inherited for p in entry)
        return [(Fusion(paths, (), "", why), None, None)]
    found = []
    for entry in declared:
        resolved = [_resolve(module, path) for path in entry]
        if any(r is None for r in resolved):
            continue
        layers = [layer for _, _, layer in resolved]
        paths = tuple(_join(prefix, path) for path in entry)
        classes = (Conv2d, BatchNorm2d, ReLU)[:len(layers)]
        names = tuple(type(layer).__name__ for layer in layers)
        odd = [_not_plain(p, layer, c) for p, layer, c in zip(paths, layers, classes)
               if not _plain(layer, c)]
        if any(id(layer) in claimed for layer in layers):
            odd.append("a layer of it is fused already")
        elif not odd and layers[1].num_features != layers[0].out_channels:
            odd.append(f"{paths[1]} normalises {layers[1].num_features} channels, "
                       f"{paths[0]} makes {layers[0].out_channels}")
        if odd:
            found.append((Fusion(paths, names, "", "; ".join(odd)), None, None))
            continue
        claimed.update(id(layer) for layer in layers)
        found.append((Fusion(paths, names, FusedConvBatchNorm2d.__name__),
                      [(parent, name) for parent, name, _ in resolved], FusedConvBatchNorm2d))
    return found


def _find(model):
    """Every (Fusion, slots [(parent, attribute name)], builder or None) in ``model``."""
    claimed: set[int] = set()
    found = []
    modules = list(model.named_modules())
    for prefix, module in modules:
        if isinstance(module, Sequential) and _forward_owner(module) is Sequential \
                and "forward" not in vars(module):
            found += _in_sequential(prefix, module, claimed)
    for prefix, module in modules:
        found += _in_block(prefix, module, claimed)
    return found
