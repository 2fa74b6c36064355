"""Keras weight files (HDF5, through h5py) into minidl's Keras-built models.

    pip install 'minidl[keras]'          # h5py; Keras itself is NOT needed
    >>> from minidl.models.keras_resnet import keras_resnet50
    >>> model = keras_resnet50().eval()
    >>> load_keras_weights(model, "resnet50_weights_tf_dim_ordering_tf_kernels.h5")

Two file layouts are read:

* **legacy (Keras 2)**, what the Keras applications publish and ``model.save_weights("x.h5")``
  wrote before Keras 3: the root (or its ``model_weights`` group, in a whole-model file) has the
  attribute ``layer_names`` (split into ``layer_names0``, ``layer_names1``, ... when longer than
  an HDF5 attribute holds); each layer's group has ``weight_names`` (``conv1_conv/kernel:0``,
  ``conv1_bn/gamma:0``, ...), the paths of its datasets.  Keras 3 writes the same layout
  without the ``:0`` (``keras.src.legacy.saving.legacy_h5_format``).
* **Keras 3** ``.weights.h5``: ``layers/<group>/vars/0, 1, ...`` with the layer's name in the
  ``vars`` attribute ``name``; the variables are positional (conv and dense: kernel, bias;
  batch norm: gamma, beta, moving_mean, moving_variance, and without gamma when it has three,
  as ``scale=False`` layers such as InceptionV3's have).

Arrays are converted to minidl's layouts::

    Conv2D kernel (KH, KW, Cin, Cout) "HWIO"    -> Conv2d.W (Cout, Cin, KH, KW) "OIHW"
    Dense kernel (in, out)                      -> Linear.W (out, in)
    BatchNormalization gamma, beta,             -> gamma (ones when the layer has none), beta,
      moving_mean, moving_variance                 running_mean, running_var

Batch norm epsilons are not in the files: the models set Keras's (1.001e-5 for ResNet50, 1e-3 for
InceptionV3).  Which Keras layer feeds which minidl module: for
:class:`~minidl.models.keras_resnet.KerasResNet` by Keras's explicit names (``conv1_conv``,
``conv2_block1_0_conv`` = ``layer1.0.downsample.0``, ``predictions`` = ``fc``, ...); for
:class:`~minidl.models.keras_inception.KerasInception3`, whose Keras layers are named by a
counter (``conv2d_1`` ... ``conv2d_94`` in Keras 2's file, ``conv2d`` ... ``conv2d_93`` in a fresh
Keras 3 session), by that counter: the n-th convolution and batch norm Keras created are the n-th
``BasicConv2d`` of the minidl model (the definition order of both is TF-slim's).
"""
from __future__ import annotations

import os
import re
from collections import OrderedDict

import numpy

from minidl.layers.conv import Conv2d
from minidl.layers.linear import Linear
from minidl.layers.normalization import BatchNorm2d

__all__ = ["read_keras_h5", "keras_to_minidl", "load_keras_weights", "KerasWeightsError"]

INSTALL_HINT = "pip install 'minidl[keras]'  (or: pip install h5py)"


class KerasWeightsError(ValueError):
    """A Keras weight file that cannot be read, or does not fit the model."""


def _h5py():
    try:
        import h5py
    except ImportError as exc:
        raise ImportError(f"reading Keras .h5 weights needs h5py, which is not installed: "
                          f"{INSTALL_HINT}") from exc
    return h5py


def _text(value) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)


def _attr_list(group, name: str) -> list[str] | None:
    """A string-list attribute, re-joined when Keras split it into ``name0, name1, ...``."""
    if name in group.attrs:
        return [_text(v) for v in group.attrs[name]]
    chunks, i = [], 0
    while f"{name}{i}" in group.attrs:
        chunks += [_text(v) for v in group.attrs[f"{name}{i}"]]
        i += 1
    return chunks if i else None


def _leaf(weight_name: str) -> str:
    """``conv1_conv/kernel:0`` -> ``kernel``."""
    return weight_name.rpartition("/")[2].split(":")[0]


def _read_legacy(root, layer_names, path) -> OrderedDict:
    layers = OrderedDict()
    for name in layer_names:
        if name not in root:
            raise KerasWeightsError(f"{path}: layer {name!r} is listed in layer_names but has "
                                    "no group")
        group = root[name]
        weights = OrderedDict()
        for wname in _attr_list(group, "weight_names") or []:
            weights[_leaf(wname)] = numpy.asarray(group[wname][()])
        if weights:
            layers[name] = weights
    return layers


def _keras3_leaves(arrays) -> list[str]:
    shapes = [a.ndim for a in arrays]
    if shapes in ([4, 1], [4], [2, 1], [2]):
        return ["kernel", "bias"][:len(arrays)]
    if all(n == 1 for n in shapes) and len(arrays) in (3, 4):
        names = ["gamma", "beta", "moving_mean", "moving_variance"]
        return names if len(arrays) == 4 else names[1:]
    return [f"var{i}" for i in range(len(arrays))]


def _read_keras3(root) -> OrderedDict:
    layers = OrderedDict()

    def visit(group):
        if "vars" in group and len(group["vars"]):
            v = group["vars"]
            arrays = [numpy.asarray(v[k][()]) for k in sorted(v, key=int)]
            name = _text(v.attrs.get("name", group.name.rpartition("/")[2]))
            layers[name] = OrderedDict(zip(_keras3_leaves(arrays), arrays))
        for key in group:
            if key != "vars" and hasattr(group[key], "keys"):     # a sub-group
                visit(group[key])

    visit(root["layers"])
    return layers


def read_keras_h5(path) -> "OrderedDict[str, OrderedDict[str, numpy.ndarray]]":
    """The layers of a Keras weight file that hold weights, in the file's order:
    ``{layer name: {"kernel" | "bias" | "gamma" | "beta" | "moving_mean" |
    "moving_variance": array in Keras's layout}}``.

    Raises ImportError (h5py missing, naming the pip install), FileNotFoundError, or
    :class:`KerasWeightsError` (not HDF5, or neither layout).
    """
    h5py = _h5py()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"Keras weights file {path!r} does not exist")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise KerasWeightsError(f"{path!r} is not an HDF5 file (a Keras .h5 weights file was "
                                f"expected): {exc}") from exc
    with f:
        root = f["model_weights"] if "model_weights" in f else f
        names = _attr_list(root, "layer_names")
        if names is not None:
            return _read_legacy(root, names, path)
        if "layers" in f and isinstance(f["layers"], h5py.Group):
            return _read_keras3(f)
    raise KerasWeightsError(f"{path!r} is HDF5 but not a Keras weights file: no 'layer_names' "
                            "attribute (Keras 2 layout) and no 'layers' group (Keras 3 layout)")


# ----------------------------------------------------------------------------- name maps

def _resnet_map(model, layers) -> list[tuple[str, str]]:
    """(minidl module path, Keras layer name) for a KerasResNet."""
    pairs = [("conv1", "conv1_conv"), ("bn1", "conv1_bn"), ("fc", "predictions")]
    for s in range(1, 5):
        for j, block in enumerate(getattr(model, f"layer{s}")):
            k = f"conv{s + 1}_block{j + 1}"
            for i in (1, 2, 3):
                pairs += [(f"layer{s}.{j}.conv{i}", f"{k}_{i}_conv"),
                          (f"layer{s}.{j}.bn{i}", f"{k}_{i}_bn")]
            if block.downsample is not None:
                pairs += [(f"layer{s}.{j}.downsample.0", f"{k}_0_conv"),
                          (f"layer{s}.{j}.downsample.1", f"{k}_0_bn")]
    return pairs


def _counter(name: str) -> int:
    m = re.search(r"_(\d+)$", name)
    return int(m.group(1)) if m else 0


def _inception_map(model, layers) -> list[tuple[str, str]]:
    """(minidl module path, Keras layer name) for a KerasInception3, by creation counter."""
    def kind(weights):
        if "moving_mean" in weights:
            return "bn"
        k = weights.get("kernel")
        return {4: "conv", 2: "dense"}.get(getattr(k, "ndim", None), "other")

    by_kind: dict[str, list[str]] = {"conv": [], "bn": [], "dense": [], "other": []}
    for name, weights in layers.items():
        by_kind[kind(weights)].append(name)
    units = [p for p, m in model.named_modules() if type(m).__name__ == "BasicConv2d"]
    convs = sorted(by_kind["conv"], key=_counter)
    bns = sorted(by_kind["bn"], key=_counter)
    if len(convs) != len(units) or len(bns) != len(units) or len(by_kind["dense"]) != 1:
        raise KerasWeightsError(
            f"expected {len(units)} Conv2D, {len(units)} BatchNormalization and 1 Dense layers "
            f"(Keras's InceptionV3), the file has {len(convs)}, {len(bns)} and "
            f"{len(by_kind['dense'])}")
    pairs = [(f"{u}.conv", c) for u, c in zip(units, convs)]
    pairs += [(f"{u}.bn", b) for u, b in zip(units, bns)]
    return pairs + [("fc", by_kind["dense"][0])]


def _name_map(model, layers):
    from minidl.models.keras_inception import KerasInception3
    from minidl.models.keras_resnet import KerasResNet
    if isinstance(model, KerasResNet):
        return _resnet_map(model, layers)
    if isinstance(model, KerasInception3):
        return _inception_map(model, layers)
    raise KerasWeightsError(f"no Keras layer map for {type(model).__name__}; Keras weights "
                            "load into minidl.models.keras_resnet50() and "
                            "keras_inception_v3()")


def _convert(module, weights, where) -> dict:
    def need(leaf):
        if leaf not in weights:
            raise KerasWeightsError(f"{where}: no {leaf!r} (has {', '.join(weights)})")
        return weights[leaf]

    if isinstance(module, Conv2d):
        out = {"W": need("kernel").transpose(3, 2, 0, 1)}          # HWIO -> OIHW
        if module.b is not None:
            out["b"] = need("bias")
        elif "bias" in weights:
            raise KerasWeightsError(f"{where}: the Keras layer has a bias, the model's "
                                    "convolution has none")
        return out
    if isinstance(module, Linear):
        return {"W": need("kernel").T, "b": need("bias")}          # (in, out) -> (out, in)
    if isinstance(module, BatchNorm2d):
        beta = need("beta")
        gamma = weights.get("gamma", numpy.ones_like(beta))       # scale=False: gamma is 1
        return {"gamma": gamma, "beta": beta, "running_mean": need("moving_mean"),
                "running_var": need("moving_variance")}
    raise KerasWeightsError(f"{where}: cannot load Keras weights into {type(module).__name__}")


def keras_to_minidl(model, layers) -> "OrderedDict[str, numpy.ndarray]":
    """A minidl ``state_dict`` for ``model`` (a KerasResNet or KerasInception3) from the layers
    :func:`read_keras_h5` returned; every layer of the file must be used."""
    modules = dict(model.named_modules())
    state = OrderedDict()
    used = set()
    for path, kname in _name_map(model, layers):
        if kname not in layers:
            raise KerasWeightsError(f"the file has no Keras layer {kname!r} (for {path}); "
                                    f"it has {len(layers)} layers with weights, e.g. "
                                    f"{', '.join(list(layers)[:4])}")
        used.add(kname)
        for leaf, arr in _convert(modules[path], layers[kname], f"{kname} -> {path}").items():
            state[f"{path}.{leaf}"] = numpy.ascontiguousarray(arr)
    extra = [k for k in layers if k not in used]
    if extra:
        raise KerasWeightsError(f"the file has Keras layers the model does not use: "
                                f"{', '.join(extra[:6])}{' ...' if len(extra) > 6 else ''}")
    return state


def load_keras_weights(model, path):
    """Read the Keras weight file ``path`` into ``model`` (in place) and return the model.

    Shapes are checked (a weight file of another architecture or class count fails with the
    layer named); arrays are cast to the model's dtype and moved to its device.
    """
    layers = read_keras_h5(path)
    try:
        state = keras_to_minidl(model, layers)
        for key, value in model.state_dict().items():   # a training counter Keras lacks
            if key.endswith(".num_batches_tracked") and key not in state:
                state[key] = value
        model.load_state_dict(state)
    except (KerasWeightsError, ValueError) as exc:
        raise KerasWeightsError(f"{os.fspath(path)!r}: {exc}") from exc
    return model
