"""Reverse-mode automatic differentiation: Tensor, Parameter, Function, backward, no_grad.

This module holds the machinery only; the math of each op lives in ``minidl.functions``.

A :class:`Function` maps input arrays to output arrays in ``forward`` and maps output
gradients to input gradients in ``backward``; calling it on Tensors records the graph::

    x ──► Function ──► y          y.creator is the Function, Function.inputs is (x,)

``Tensor.backward()`` visits the recorded Functions in reverse topological order (largest
*generation* first, with a heap: iterative, so no recursion limit), accumulates the gradient of
every Tensor that ``requires_grad``, and frees the graph as it goes unless ``retain_graph``.
A leaf may carry "gradient ready" hooks (:meth:`Tensor.register_post_accumulate_grad_hook`),
called during backward as soon as its ``.grad`` is final: data-parallel training starts a
gradient allreduce from them while backward goes on (minidl.distributed.reducer).  That
traversal, the accumulation and the hooks are the backward engine, ``minidl.backward``.
Gradients are plain backend arrays (``x.grad``), not Tensors: minidl does first-order
differentiation only, which keeps backward cheap and readable.
"""
from __future__ import annotations

import contextlib
import weakref

import numpy

from minidl import backend as B
from minidl.backward import HookHandle, register_hook, run_backward

__all__ = ["Tensor", "Parameter", "Function", "no_grad", "enable_grad", "is_grad_enabled",
           "tensor", "as_tensor"]

_grad_enabled = True
_profiler = None  # a minidl.profiler.Profile while one is running


def is_grad_enabled() -> bool:
    """Whether new operations are being recorded for backpropagation."""
    return _grad_enabled


@contextlib.contextmanager
def _set_grad_enabled(flag: bool):
    global _grad_enabled
    previous, _grad_enabled = _grad_enabled, flag
    try:
        yield
    finally:
        _grad_enabled = previous


def no_grad():
    """Context manager (and decorator) that records no graph: for evaluation and updates."""
    return _GradMode(False)


def enable_grad():
    """Context manager that turns recording back on inside a ``no_grad`` block."""
    return _GradMode(True)


class _GradMode(contextlib.ContextDecorator):
    # A stack, not one saved state: a decorated function that recurses re-enters the same
    # instance, and each exit must restore what its own entry saw.
    def __init__(self, flag):
        self.flag = flag
        self._cms = []

    def __enter__(self):
        cm = _set_grad_enabled(self.flag)
        cm.__enter__()
        self._cms.append(cm)

    def __exit__(self, *exc):
        return self._cms.pop().__exit__(*exc)


class Tensor:
    """An array plus what backpropagation needs: its gradient and the Function that made it.

    Parameters
    ----------
    data : backend array (numpy.ndarray, cupy.ndarray, or a strict array). Kept as given (no
        copy, no device move); use :func:`tensor` to build one from Python data on the active
        backend.
    requires_grad : accumulate ``grad`` for this tensor during ``backward``.
    name : optional label used in reprs and error messages.
    """

    __array_priority__ = 200  # so that ``ndarray * Tensor`` dispatches to Tensor.__rmul__
    _post_hooks = None        # {key: hook}; a class default, so a Tensor without hooks pays 0

    def __init__(self, data, requires_grad: bool = False, name: str | None = None):
        if isinstance(data, Tensor):
            raise TypeError("data must be an array, got a Tensor; use .detach() or .data")
        if not B.is_array(data):
            raise TypeError(
                f"data must be a backend array (numpy/cupy), got {type(data).__name__}; "
                "use minidl.tensor(...) to build a Tensor from Python data")
        self.data = data
        self.grad = None
        self.creator: Function | None = None
        self.generation = 0
        self.requires_grad = bool(requires_grad)
        self.name = name
        self._retain_grad = False

    # -- array-like attributes ------------------------------------------------------------
    shape = property(lambda self: self.data.shape)
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: self.data.size)
    dtype = property(lambda self: self.data.dtype)
    device = property(lambda self: B.device_of(self.data))

    def __len__(self):
        return len(self.data)

    def __repr__(self):
        head = f"Tensor(shape={tuple(self.shape)}, dtype={self.dtype}, device={self.device}"
        if self.name:
            head += f", name={self.name!r}"
        if self.requires_grad:
            head += ", requires_grad=True"
        return head + ")"

    @property
    def is_leaf(self) -> bool:
        return self.creator is None

    def retain_grad(self) -> "Tensor":
        """Keep ``grad`` on this non-leaf tensor after ``backward`` (for inspection)."""
        self._retain_grad = True
        return self

    def register_post_accumulate_grad_hook(self, hook) -> HookHandle:
        """Call ``hook(self)`` in every ``backward`` once this leaf's ``.grad`` holds its final
        value for that backward (as PyTorch's hook of the same name).

        A leaf that several Functions consume (shared weights, a layer called twice) is ready
        after its last consumer: backward counts each hooked leaf's edges in the graph before
        it starts and calls the hook when the last one was visited.  A leaf that got no
        gradient in a backward is not called; one whose remaining consumers received no
        gradient at all is called when backward ends.  Returns a handle whose ``remove()``
        unregisters the hook (a ``minidl.backward.HookHandle``).  Only leaves that require
        gradients can have one."""
        if self.creator is not None or not self.requires_grad:
            raise RuntimeError(
                "register_post_accumulate_grad_hook: only a leaf tensor that requires grad "
                f"(a Parameter) can have one, got {self!r}"
                + (" made by " + type(self.creator).__name__ if self.creator else ""))
        if not callable(hook):
            raise TypeError(f"register_post_accumulate_grad_hook: hook must be callable, "
                            f"got {type(hook).__name__}")
        return register_hook(self, hook)

    def numpy(self) -> numpy.ndarray:
        """A host ``numpy.ndarray`` copy of the data (a device->host copy on GPU)."""
        return B.to_host(self.data)

    def item(self) -> float:
        """The value of a one-element tensor as a Python number."""
        if self.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.data.item()

    def detach(self) -> "Tensor":
        """A new Tensor sharing the data, cut from the graph."""
        return Tensor(self.data)

    def zero_grad(self) -> None:
        self.grad = None

    def to(self, device: str) -> "Tensor":
        """A copy on ``device`` (a backend name: "numpy", "cupy", "strict"), cut from the graph."""
        return Tensor(B.to_device(self.data, device), requires_grad=self.requires_grad,
                      name=self.name)

    def set_creator(self, func: "Function") -> None:
        self.creator = func
        self.generation = func.generation + 1

    # -- backpropagation -------------------------------------------------------------------
    def backward(self, grad=None, retain_graph: bool = False) -> None:
        """Backpropagate from this tensor, accumulating ``.grad`` on tensors that require it.

        Parameters
        ----------
        grad : gradient of the final objective w.r.t. this tensor (same shape); defaults to
            ones, which requires a one-element tensor (a loss).
        retain_graph : keep the graph so that ``backward`` can be called again.
        """
        if grad is None:
            if self.size != 1:
                raise ValueError("backward() without grad needs a one-element tensor (a loss), "
                                 f"got shape {self.shape}; pass grad= of that shape")
            xp = B.get_array_module(self.data)
            grad = xp.ones(self.shape, dtype=self.dtype)
        else:
            grad = grad.data if isinstance(grad, Tensor) else grad
            B.check_same_device(self.data, grad, names=("tensor", "grad"), where="backward")
            if grad.shape != self.shape:
                raise ValueError(f"backward(): grad must have shape {self.shape}, "
                                 f"got {grad.shape}")
        run_backward(self, grad, retain_graph, _profiler)

    # Operators and methods (``+``, ``@``, ``.sum()`` ...) are installed by minidl.functions.


class Parameter(Tensor):
    """A Tensor that a Module owns and an optimizer updates (``requires_grad`` is always True)."""

    def __init__(self, data, name: str | None = None):
        super().__init__(data, requires_grad=True, name=name)

    def __repr__(self):
        return "Parameter" + super().__repr__()[len("Tensor"):]


class Function:
    """One differentiable operation: ``forward`` on arrays, ``backward`` on gradients.

    Subclasses implement ``forward(*xs) -> y or tuple of ys`` and
    ``backward(*gys) -> gx or tuple of gxs`` (``None`` for an input that gets no gradient),
    saving whatever backward needs on ``self``.  Call an instance on Tensors, arrays or scalars;
    it returns a Tensor (or a tuple for several outputs) and records itself in the graph when
    gradients are enabled and some input requires them.
    """

    generation = 0
    released = False
    # True in a subclass whose backward returns only arrays made for that call and kept
    # nowhere else: a leaf input's gradient then becomes its .grad without a copy
    fresh_grads = False
    inputs: tuple = ()
    outputs: tuple = ()
    output_meta: tuple = ()

    def __call__(self, *inputs):
        tensors = _as_input_tensors(inputs, type(self).__name__)
        xs = [t.data for t in tensors]
        if _profiler is None:
            ys = self.forward(*xs)
        else:
            t0 = _profiler.start_op()
            ys = self.forward(*xs)
            _profiler.end_op("forward", self, getattr(xs[0], "shape", ()) if xs else (), t0)
        single = not isinstance(ys, tuple)
        ys = (ys,) if single else ys
        # NumPy reductions return NumPy scalars; keep every output an array (CuPy gives 0-d)
        ys = tuple(numpy.asarray(y) if isinstance(y, numpy.generic) else y for y in ys)
        needs_graph = _grad_enabled and any(t.requires_grad for t in tensors)
        outputs = tuple(Tensor(y, requires_grad=needs_graph) for y in ys)
        if needs_graph:
            self.generation = max(t.generation for t in tensors)
            for out in outputs:
                out.set_creator(self)
            self.inputs = tuple(tensors)
            self.outputs = tuple(weakref.ref(o) for o in outputs)
            self.output_meta = tuple((y.shape, y.dtype) for y in ys)
        return outputs[0] if single else outputs

    def forward(self, *xs):
        raise NotImplementedError

    def backward(self, *gys):
        raise NotImplementedError

    def release(self) -> None:
        """Drop references kept for backward (inputs and saved arrays) to free memory."""
        for key in [k for k in vars(self) if k not in ("generation", "outputs", "output_meta")]:
            setattr(self, key, None)
        self.inputs = ()
        self.released = True


def _as_input_tensors(inputs, where: str) -> list[Tensor]:
    """Tensors for every input; scalars become arrays on the device (and dtype) of the others."""
    arrays = [x.data if isinstance(x, Tensor) else x for x in inputs]
    names = tuple(f"input {i}" for i in range(len(inputs)))
    b = B.check_same_device(*arrays, names=names, where=where)
    ref_dtype = next((a.dtype for a in arrays if B.is_array(a)
                      and a.dtype.kind == "f"), None)
    out = []
    for x in inputs:
        if isinstance(x, Tensor):
            out.append(x)
        elif B.is_array(x):
            out.append(Tensor(x))
        elif isinstance(x, (int, float, bool, numpy.number, numpy.bool_)):
            dt = ref_dtype if ref_dtype is not None else B.get_default_dtype()
            out.append(Tensor(b.xp.asarray(x, dtype=dt)))
        else:
            raise TypeError(f"{where}: inputs must be Tensors, backend arrays or Python "
                            f"numbers, got {type(x).__name__}")
    return out


def tensor(data, dtype=None, requires_grad: bool = False, name: str | None = None) -> Tensor:
    """A Tensor on the active backend from Python data, NumPy or device arrays.

    Floating data takes ``dtype`` (default: the default dtype, float32); integer and boolean
    data keep their kind unless ``dtype`` is given.
    """
    host = B.to_host(data) if B.is_array(data) else numpy.asarray(data)
    if dtype is None and host.dtype.kind == "f":
        dtype = B.get_default_dtype()
    if dtype is not None:
        host = host.astype(dtype, copy=False)
    return Tensor(B.to_device(host), requires_grad=requires_grad, name=name)


def as_tensor(x) -> Tensor:
    """``x`` if it is a Tensor, else a Tensor wrapping the array ``x`` (no copy)."""
    return x if isinstance(x, Tensor) else Tensor(x)


B._register_tensor_type(Tensor)
