"""Module: the base of every layer and model, and Sequential.

A Module owns Parameters (learned), buffers (state such as BatchNorm's running statistics) and
sub-Modules, registered simply by assigning them as attributes::

    class MLP(Module):
        def __init__(self):
            super().__init__()
            self.fc1 = Linear(784, 128)
            self.fc2 = Linear(128, 10)

        def forward(self, x):
            return self.fc2(relu(self.fc1(x)))

``state_dict()`` names every parameter and buffer by its dotted path ("fc1.W"); it is saved to
and loaded from ``.npz`` without pickle by :mod:`minidl.serialization`.
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Iterator

import numpy

from minidl import backend as B
from minidl.autograd import Parameter, Tensor, as_tensor, no_grad

__all__ = ["Module", "Sequential", "check_input", "short_pair"]


class Module:
    """Base class for layers and models.  Subclasses implement ``forward``."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # -- registration ----------------------------------------------------------------------
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call super().__init__() "
                               "before assigning attributes")
        for table in (self._parameters, self._modules, self._buffers):
            table.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, array) -> None:
        """Register a non-learned array (e.g. running mean) saved in the state_dict."""
        if not B.is_array(array):
            raise TypeError(f"register_buffer: array must be a backend array, got "
                            f"{type(array).__name__}")
        self._buffers[name] = True
        object.__setattr__(self, name, array)

    # -- traversal -------------------------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        yield prefix, self
        for name, m in self._modules.items():
            yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator["Module"]:
        return (m for _, m in self.named_modules())

    def children(self) -> Iterator["Module"]:
        return iter(self._modules.values())

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        for mname, m in self.named_modules(prefix):
            for pname, p in m._parameters.items():
                yield (f"{mname}.{pname}" if mname else pname), p

    def parameters(self) -> list[Parameter]:
        """Every Parameter once, even when shared by several layers (tied weights): an
        optimizer given a parameter twice would update it twice."""
        seen = set()
        return [p for _, p in self.named_parameters()
                if id(p) not in seen and not seen.add(id(p))]

    def named_buffers(self, prefix: str = "") -> Iterator[tuple[str, object]]:
        for mname, m in self.named_modules(prefix):
            for bname in m._buffers:
                yield (f"{mname}.{bname}" if mname else bname), getattr(m, bname)

    def num_parameters(self) -> int:
        """Total number of learned scalars."""
        return int(sum(p.size for p in self.parameters()))

    # -- modes and devices -----------------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        """Training mode (dropout active, batch statistics); returns self."""
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> "Module":
        """Evaluation mode (dropout off, running statistics); returns self."""
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def to(self, device: str) -> "Module":
        """Move every parameter and buffer to ``device`` ("numpy", "cupy", "strict") in place."""
        for m in self.modules():
            for p in m._parameters.values():
                p.data = B.to_device(p.data, device)
                p.grad = None if p.grad is None else B.to_device(p.grad, device)
            for name in m._buffers:
                object.__setattr__(m, name, B.to_device(getattr(m, name), device))
        return self

    @property
    def device(self) -> str:
        params = self.parameters()
        return params[0].device if params else B.get_backend().device

    # -- state -----------------------------------------------------------------------------
    def state_dict(self) -> "OrderedDict[str, object]":
        """Every parameter and buffer by dotted name, as arrays on the module's device."""
        state = OrderedDict((n, p.data) for n, p in self.named_parameters())
        state.update(self.named_buffers())
        return state

    def load_state_dict(self, state, strict: bool = True) -> tuple[list[str], list[str]]:
        """Copy arrays from ``state`` (name -> array, any device) into this module.

        Shapes must match exactly; arrays are cast to each parameter's dtype and moved to its
        device.  With ``strict`` a missing or unexpected key is an error listing all of them;
        otherwise they are returned as ``(missing, unexpected)``.
        """
        where = f"load_state_dict into {type(self).__name__}"
        if not hasattr(state, "keys") or not hasattr(state, "__getitem__"):
            raise TypeError(f"{where}: state must be a mapping of names to arrays, got "
                            f"{type(state).__name__}")
        not_arrays = [f"{k} ({type(v).__name__})" for k, v in state.items()
                      if not (B.is_array(v) or isinstance(v, numpy.ndarray))]
        if not_arrays:
            raise TypeError(f"{where}: values must be arrays, got " + ", ".join(not_arrays))
        own = self.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if strict and (missing or unexpected):
            raise ValueError(f"load_state_dict into {type(self).__name__}: missing keys "
                             f"{missing}, unexpected keys {unexpected}")
        bad = [f"{k}: expected shape {tuple(own[k].shape)}, got {tuple(state[k].shape)}"
               for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
        if bad:
            raise ValueError(f"load_state_dict into {type(self).__name__}: shape mismatch: "
                             + "; ".join(bad))
        targets = dict(self.named_parameters())
        for mname, m in self.named_modules():
            for bname in m._buffers:
                targets[f"{mname}.{bname}" if mname else bname] = (m, bname)
        for k in own:
            if k not in state:
                continue
            dest = targets[k]
            current = dest.data if isinstance(dest, Tensor) else getattr(*dest)
            value = B.to_device(state[k], B.backend_of(current).name).astype(current.dtype)
            if isinstance(dest, Tensor):
                dest.data = value
            else:
                object.__setattr__(dest[0], dest[1], value)
        return missing, unexpected

    def save(self, path) -> None:
        """Save the state_dict to ``path`` (.npz, no pickle); the module stays where it is."""
        from minidl.serialization import save_state
        save_state(path, self.state_dict())

    def load(self, path, strict: bool = True) -> "Module":
        """Load a state_dict saved by :meth:`save`; returns self."""
        from minidl.serialization import load_state
        self.load_state_dict(load_state(path), strict=strict)
        return self

    # -- calling and printing --------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        if self._modules:
            for name, m in self._modules.items():
                child = repr(m).replace("\n", "\n  ")
                count = m.num_parameters()
                lines.append(f"  ({name}): {child}" + (f"  # {count:,} params" if count else ""))
            lines.append(")")
            return "\n".join(lines)
        return lines[0] + ")"

    def summary(self, input_shape, dtype=None) -> str:
        """A table of each leaf layer's output shape and parameter count for an input of
        ``input_shape`` (including the batch axis), computed by a forward pass on zeros."""
        rows = []
        hooked = []
        for name, m in self.named_modules():
            if m._modules:
                continue
            original = m.forward

            def wrapped(*a, _m=m, _name=name, _orig=original, **k):
                out = _orig(*a, **k)
                rows.append((_name or type(_m).__name__, type(_m).__name__,
                             tuple(out.shape), _m.num_parameters()))
                return out
            object.__setattr__(m, "forward", wrapped)
            hooked.append(m)
        try:
            xp = B.get_xp() if not self.parameters() else B.get_array_module(self.parameters()[0])
            x = Tensor(xp.zeros(tuple(input_shape), dtype=dtype or B.get_default_dtype()))
            was_training = self.training
            self.eval()
            with no_grad():
                self(x)
            self.train(was_training)
        finally:
            for m in hooked:
                object.__delattr__(m, "forward")
        width = max([len(r[0]) for r in rows] + [5])
        out = [f"{'layer':<{width}}  {'type':<16} {'output shape':<20} {'params':>10}"]
        out += [f"{n:<{width}}  {t:<16} {str(s):<20} {p:>10,}" for n, t, s, p in rows]
        out.append(f"total parameters: {self.num_parameters():,}")
        return "\n".join(out)


class Sequential(Module):
    """Modules applied in order: ``Sequential(Linear(784, 10), ReLU())``."""

    def __init__(self, *layers: Module):
        super().__init__()
        for i, layer in enumerate(layers):
            self.append(layer, _index=i)

    def append(self, layer: Module, _index: int | None = None) -> "Sequential":
        if not isinstance(layer, Module):
            raise TypeError(f"Sequential: layer {len(self._modules)} must be a Module, got "
                            f"{type(layer).__name__}")
        setattr(self, str(len(self._modules) if _index is None else _index), layer)
        return self

    def __getitem__(self, i):
        layers = list(self._modules.values())
        return Sequential(*layers[i]) if isinstance(i, slice) else layers[i]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())

    def forward(self, x):
        """The layers in order, except for rewrites that give the same values:

        * a ReLU right before a MaxPool2d runs after it.  The two orders give the same values
          and the same gradients, bit for bit: ReLU keeps the order of its inputs, so the
          window's first maximum is the same element (or, when it is <= 0, ReLU zeroes both its
          value and its gradient either way).  After the pool, ReLU touches a quarter as many
          values (2x2 windows): in the MNIST CNN's step that saves about 1 ms of 36 on a
          2-core CPU.
        * on NumPy, a BatchNorm2d followed by a 2x2 stride-2 MaxPool2d, with or without a
          ReLU between them (moved after the pool, as above), is one op,
          :meth:`BatchNorm2d.forward_max_pooled`: the same values, normalising only the pooled
          quarter, and its backward one pass over the input (MNIST CNN: about 1.5 ms less per
          step on a 2-core CPU).
        * on NumPy, a 3x3 stride-1 Conv2d without bias before such a block joins it, where
          conv2d would take Winograd or one product per image:
          :meth:`BatchNorm2d.forward_conv_max_pooled`
          (:func:`minidl.functions.conv2d_batch_norm_max_pool2d`), the same values to rounding
          (the statistics are summed in another order).  The convolution's output stays in the
          layout it is made in, window by window, and is never put into NCHW (MNIST CNN: about
          4 ms less per step on a 2-core CPU).

        Only plain layers are rewritten (no subclasses, no replaced ``forward``)."""
        layers = list(self._modules.values())
        i = 0
        while i < len(layers):
            fused = _conv_then_batch_norm_max_pool(layers, i, x)
            if fused:   # 4: with the ReLU between them, applied after the pool
                x = layers[i + 1].forward_conv_max_pooled(layers[i], x, relu=fused == 4)
                i += fused
                continue
            fused = _batch_norm_then_max_pool(layers, i, x)
            if fused:   # 3: with the ReLU between them, applied after the pool
                x = layers[i].forward_max_pooled(x, relu=fused == 3)
                i += fused
            elif i + 1 < len(layers) and _relu_then_max_pool(layers[i], layers[i + 1]):
                x = layers[i](layers[i + 1](x))
                i += 2
            else:
                x = layers[i](x)
                i += 1
        return x


def _plain(layer: Module, cls) -> bool:
    """Whether ``layer`` is exactly a ``cls`` (not a subclass) with its own ``forward`` (not
    one replaced on the instance, as :meth:`Module.summary` does to record shapes)."""
    return type(layer) is cls and "forward" not in vars(layer)


def _relu_then_max_pool(first: Module, second: Module) -> bool:
    """Whether ``first`` is a plain ReLU and ``second`` a plain MaxPool2d."""
    from minidl.layers.activation import ReLU
    from minidl.layers.pooling import MaxPool2d
    return _plain(first, ReLU) and _plain(second, MaxPool2d)


def _batch_norm_then_max_pool(layers, i, x) -> int:
    """How many layers from ``layers[i]`` run as one batch norm + max pool op: 3 for plain
    BatchNorm2d, ReLU, MaxPool2d(2), 2 for BatchNorm2d, MaxPool2d(2), else 0.  Only for a
    NumPy input (N, C, H, W) with H and W even; elsewhere the layers run one by one."""
    from minidl.layers.activation import ReLU
    from minidl.layers.normalization import BatchNorm2d
    from minidl.layers.pooling import MaxPool2d
    if not _plain(layers[i], BatchNorm2d):
        return 0
    data = x.data if isinstance(x, Tensor) else x
    if not (B.is_array(data) and B.backend_of(data).name == "numpy" and data.ndim == 4
            and data.shape[2] % 2 == 0 and data.shape[3] % 2 == 0 and data.shape[2] > 0
            and data.shape[3] > 0 and data.dtype.kind == "f"):
        return 0
    j = i + 1 + (i + 1 < len(layers) and _plain(layers[i + 1], ReLU))
    if j < len(layers) and _plain(layers[j], MaxPool2d) and \
            (layers[j].kernel_size, layers[j].stride, layers[j].padding) == ((2, 2),) * 2 + \
            ((0, 0),):
        return j - i + 1
    return 0


def _conv_then_batch_norm_max_pool(layers, i, x) -> int:
    """How many layers from ``layers[i]`` run as one conv + batch norm + max pool op: 1 + what
    :func:`_batch_norm_then_max_pool` fuses after a plain Conv2d 3x3, stride 1, without bias,
    dilation or groups, whose output it fuses, on NumPy, where the fused op has a path for it
    (:func:`minidl.functions.conv_bn_pool.fused_path`); else 0."""
    from minidl.functions.conv_bn_pool import fused_path
    from minidl.layers.conv import Conv2d
    conv = layers[i]
    if not (i + 1 < len(layers) and _plain(conv, Conv2d) and conv.b is None
            and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
            and conv.dilation == (1, 1) and conv.groups == 1):
        return 0
    data = x.data if isinstance(x, Tensor) else x
    if not (B.is_array(data) and B.backend_of(data).name == "numpy" and data.ndim == 4
            and data.shape[1] == conv.in_channels and data.dtype.kind == "f"):
        return 0
    (ph, pw), OC = conv.padding, conv.out_channels
    OH, OW = data.shape[2] + 2 * ph - 2, data.shape[3] + 2 * pw - 2
    if OH <= 0 or OW <= 0 or getattr(layers[i + 1], "num_features", None) != OC:
        return 0
    out = numpy.broadcast_to(numpy.zeros((), data.dtype), (data.shape[0], OC, OH, OW))
    fused = _batch_norm_then_max_pool(layers, i + 1, out)
    if not fused or fused_path("numpy", conv.in_channels, OC, OH, OW) is None:
        return 0
    return 1 + fused


def check_input(layer: Module, x, expected: str, ndim=None, sizes=None) -> Tensor:
    """Validate a layer's input at its public boundary and return it as a Tensor.

    Checks the rank (``ndim``: int or tuple of allowed ranks), fixed axis sizes
    (``sizes``: {axis: size}), a floating dtype equal to the layer's parameters, and that it
    lives on the parameters' device.  Messages name the layer, the expected and the actual, e.g.
    "Conv2d(3, 16, kernel_size=3): expected input (N, 3, H, W), got shape (8, 1, 28, 28)".
    """
    if not isinstance(x, Tensor):
        if not B.is_array(x):
            raise TypeError(f"{layer!r}: expected input {expected} as a Tensor or array, got "
                            f"{type(x).__name__}")
        x = as_tensor(x)
    ranks = (ndim,) if isinstance(ndim, int) else ndim
    shape = tuple(x.shape)
    if ranks is not None and x.ndim not in ranks:
        raise ValueError(f"{layer!r}: expected input {expected}, got shape {shape}")
    for axis, size in (sizes or {}).items():
        if shape[axis] != size:
            raise ValueError(f"{layer!r}: expected input {expected}, got shape {shape}")
    params = layer.parameters()
    if params:
        p = params[0]
        if x.dtype != p.dtype:
            raise TypeError(f"{layer!r}: expected input dtype {p.dtype} (the layer's "
                            f"parameters), got {x.dtype}; cast the input with .astype or "
                            "set minidl.set_default_dtype before building the model")
        B.check_same_device(p.data, x.data, names=("the layer's parameters", "the input"),
                            where=repr(layer).splitlines()[0])
    return x


def short_pair(pair):
    """3 for (3, 3), (3, 1) otherwise: the shorter spelling of a pair in reprs."""
    return pair[0] if pair[0] == pair[1] else pair
