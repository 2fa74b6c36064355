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
from minidl.serialization import load_state, save_state

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
        if name in self._buffers and B.is_array(value):
            self._buffers[name] = value      # a registered buffer takes the new array
            return
        for table in (self._parameters, self._modules, self._buffers):
            table.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def set_submodule(self, name: str, module: "Module") -> None:
        """Replace the sub-module ``name`` by ``module`` in its place: ``parameters()`` and
        ``state_dict()`` keep their order (assigning the attribute would move it last).  Used
        by :func:`minidl.fuse`."""
        if name not in self._modules:
            raise KeyError(f"set_submodule: {type(self).__name__} has no sub-module {name!r}; "
                           f"it has {list(self._modules)}")
        if not isinstance(module, Module):
            raise TypeError(f"set_submodule: module must be a Module, got "
                            f"{type(module).__name__}")
        self._modules[name] = module
        object.__setattr__(self, name, module)

    def __getattr__(self, name):
        """Buffers live in ``_buffers`` (so that a module sharing that table, such as
        :class:`minidl.layers.fused.Absorbed`, sees the same arrays); read them as
        attributes."""
        buffers = self.__dict__.get("_buffers")
        if buffers is not None and name in buffers:
            return buffers[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def register_buffer(self, name: str, array) -> None:
        """Register a non-learned array (e.g. running mean) saved in the state_dict; read it
        as ``self.name``; assigning an array to ``self.name`` replaces it."""
        if not B.is_array(array):
            raise TypeError(f"register_buffer: array must be a backend array, got "
                            f"{type(array).__name__}")
        for table in (self._parameters, self._modules, self.__dict__):
            table.pop(name, None)
        self._buffers[name] = array

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
            for bname, array in m._buffers.items():
                yield (f"{mname}.{bname}" if mname else bname), array

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

    # -- freezing --------------------------------------------------------------------------
    def requires_grad_(self, flag: bool = True) -> "Module":
        """Set ``requires_grad`` on every parameter of this module and its sub-modules;
        returns self.  A frozen parameter (``False``) gets no gradient: the autograd records
        no graph through an op none of whose inputs requires one (a frozen backbone fed with
        data runs as in ``no_grad``), and an op that is recorded is told which inputs need a
        gradient (``conv2d``'s kernels skip ``gW`` of a frozen kernel, and ``gx`` where nothing
        upstream needs it).  Freezing also drops a stale ``.grad``, which an optimizer would
        otherwise apply again.  Batch norm layers keep their mode: call ``.eval()`` on a frozen
        part to also freeze its running statistics."""
        flag = bool(flag)
        for p in self.parameters():
            p.requires_grad = flag
            if not flag:
                p.grad = None
        return self

    def freeze(self) -> "Module":
        """``requires_grad_(False)``: no gradient for any parameter here (a frozen backbone)."""
        return self.requires_grad_(False)

    def unfreeze(self) -> "Module":
        """``requires_grad_(True)``: every parameter here is trained again."""
        return self.requires_grad_(True)

    def trainable_parameters(self) -> list[Parameter]:
        """The parameters that require a gradient (what an optimizer should be given)."""
        return [p for p in self.parameters() if p.requires_grad]

    def to(self, device: str) -> "Module":
        """Move every parameter and buffer to ``device`` ("numpy", "cupy", "strict") in place."""
        for m in self.modules():
            for p in m._parameters.values():
                p.data = B.to_device(p.data, device)
                p.grad = None if p.grad is None else B.to_device(p.grad, device)
            for name, array in m._buffers.items():
                m._buffers[name] = B.to_device(array, device)
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
            current = dest.data if isinstance(dest, Tensor) else dest[0]._buffers[dest[1]]
            value = B.to_device(state[k], B.backend_of(current).name).astype(current.dtype)
            if isinstance(dest, Tensor):
                dest.data = value
            else:
                dest[0]._buffers[dest[1]] = value
        return missing, unexpected

    def save(self, path) -> None:
        """Save the state_dict to ``path`` (.npz, no pickle); the module stays where it is."""
        save_state(path, self.state_dict())

    def load(self, path, strict: bool = True) -> "Module":
        """Load a state_dict saved by :meth:`save`; returns self."""
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
        tw = max([len(r[1]) for r in rows] + [16])
        out = [f"{'layer':<{width}}  {'type':<{tw}} {'output shape':<20} {'params':>10}"]
        out += [f"{n:<{width}}  {t:<{tw}} {str(s):<20} {p:>10,}" for n, t, s, p in rows]
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
        """The layers in order.  To run some runs of layers as one op (conv -> batch norm ->
        ReLU -> max pool, ...), transform the model once with :func:`minidl.fuse`."""
        for layer in self:
            x = layer(x)
        return x


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
