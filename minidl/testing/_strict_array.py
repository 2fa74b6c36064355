"""The strict ``ndarray`` (a ``numpy.ndarray`` behind CuPy's wall) and the NumPy boundary:
:func:`_wrap` (NumPy result -> strict), the ``_unwrap*`` family (strict argument -> NumPy,
refusing host arrays), and the explicit transfers :func:`asarray`, :func:`array`,
:func:`asnumpy`.  The class and the wrapping need each other, so they live together.

The class holds the hand-written members (refusals, conversions, indexing, attributes,
transfers); operators are added below and dispatch to the front's ufuncs through ``_NS`` at call
time; the rest of CuPy's methods are generated from the manifest by
:func:`minidl.testing._strict_namespace._install_methods`.
"""
from __future__ import annotations

import builtins as _b
import sys as _sys

import numpy as _np

from minidl.testing import _strict_manifest as _m
from minidl.testing._strict_core import (
    _NS, _SCALARS, _TAG, _VERSION, FRONT, _BAD_KINDS, _host_error, _not_emulated, _public)


# --------------------------------------------------------------------------- wrap / unwrap

def _wrap(r):
    """NumPy result -> strict: arrays and NumPy scalars become (0-d) strict arrays."""
    t = type(r)
    if t is _np.ndarray:
        if r.dtype.kind in _BAD_KINDS:
            raise ValueError(f"Unsupported dtype {r.dtype} ({_TAG})")
        obj = ndarray.__new__(ndarray)
        obj._a = r
        return obj
    if isinstance(r, _np.generic):
        obj = ndarray.__new__(ndarray)
        obj._a = _np.asarray(r)
        return obj
    if t is tuple or t is list or isinstance(r, tuple):  # namedtuples of linalg become tuples
        out = [_wrap(x) for x in r]
        return out if t is list else tuple(out)
    return r



def _unwrap(x, where="cupy function"):
    """Strict -> NumPy for arguments (recursively in lists/tuples); host arrays are refused."""
    t = type(x)
    if t is ndarray:
        return x._a
    if t is _np.ndarray:
        raise _host_error(where)
    if t is list or t is tuple:
        return t(_unwrap(v, where) for v in x)
    return x


def _unwrap_lenient(x):
    """Strict -> NumPy, letting host arrays through (for arguments CuPy copies to the device)."""
    t = type(x)
    if t is ndarray:
        return x._a
    if t is list or t is tuple:
        return t(_unwrap_lenient(v) for v in x)
    return x


def _unwrap_key(key):
    """An index: strict arrays -> NumPy; tuples element-wise (lists of ints pass)."""
    t = type(key)
    if t is ndarray:
        return key._a
    if t is tuple:
        return tuple(k._a if type(k) is ndarray else k for k in key)
    return key



# --------------------------------------------------------------------------- ndarray

_NDARRAY_SIGS = _m.manifest()["ndarray"]


def _fill_value(value):
    """A value for ``a[...] = value`` / ``fill``: CuPy refuses host arrays and lists (gh-2079)."""
    t = type(value)
    if t is ndarray:
        return value._a
    if t is _np.ndarray or t is list or t is tuple:
        if t is not _np.ndarray or value.ndim != 0:
            raise ValueError("non-scalar numpy.ndarray cannot be used for fill (CuPy refuses "
                             f"assignment from host arrays and lists, gh-2079; {_TAG})")
    return value


def _sort_kind(kind):
    if kind is not None and kind != "stable":
        raise ValueError(f"kind can only be None or 'stable' ({_TAG})")


def _binop(uf_name, reflected=False):
    def op(self, other):
        if not isinstance(other, _OPERANDS):
            return NotImplemented  # e.g. a minidl Tensor: let its reflected op run
        uf = _NS[uf_name]
        return uf(other, self) if reflected else uf(self, other)
    return op


def _ibinop(uf_name):
    def op(self, other):
        if not isinstance(other, _OPERANDS):
            return NotImplemented
        _NS[uf_name](self, other, self)
        return self
    return op


def _unop(uf_name):
    return lambda self: _NS[uf_name](self)


@_public
class ndarray:
    """A host array that behaves like ``cupy.ndarray`` (see the module docstring).

    Construct arrays with :func:`asarray`, ``zeros`` ...; ``ndarray(shape, dtype)`` gives an
    uninitialised one, like ``cupy.ndarray``.
    """

    __slots__ = ("_a",)
    __minidl_strict__ = True
    __array_priority__ = 100
    __hash__ = None

    def __init__(self, shape, dtype=float, memptr=None, strides=None, order="C"):
        if memptr is not None or strides is not None:
            raise NotImplementedError(f"ndarray(memptr=, strides=) is not emulated ({_TAG})")
        self._a = _np.empty(shape, dtype=dtype, order=order)

    # -- refusals
    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use "
                        f"`.get()` to construct a NumPy array explicitly ({_TAG}).")

    def __array_function__(self, func, types, args, kwargs):
        for t in types:
            if not issubclass(t, (ndarray, _np.ndarray)):
                return NotImplemented
        target = _sys.modules[FRONT]
        for part in (func.__module__ or "").split(".")[1:]:
            if part.startswith("_"):
                continue
            target = getattr(target, part, None)
            if target is None:
                return NotImplemented
        try:
            strict_func = getattr(target, func.__name__)
        except AttributeError:
            return NotImplemented
        return strict_func(*args, **kwargs)

    def __array_ufunc__(self, uf, method, *inputs, **kwargs):
        strict_uf = _NS.get(uf.__name__)
        if not isinstance(strict_uf, _NS["ufunc"]):  # the strict ufunc class
            return NotImplemented
        if method == "__call__":
            return strict_uf(*inputs, **kwargs)
        return getattr(strict_uf, method)(*inputs, **kwargs)

    def __getattr__(self, name):
        if name in _NDARRAY_SIGS:
            raise _not_emulated(f"cupy.ndarray.{name}")
        raise AttributeError(f"'cupy.ndarray' object has no attribute '{name}' in CuPy "
                             f"{_VERSION} ({_TAG})")

    # -- conversions (CuPy does .get() first, so NumPy's rules apply)
    def __float__(self):
        return float(self._a)

    def __int__(self):
        return int(self._a)

    def __complex__(self):
        return complex(self._a)

    def __bool__(self):
        return _b.bool(self._a)

    def __format__(self, spec):
        return format(self._a, spec)

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(len(self._a)))

    def __repr__(self):
        r = repr(self._a)
        return "strict_" + r if r.startswith("array(") else f"strict_array({r})"

    def __str__(self):
        return str(self._a)

    def __copy__(self):
        return _wrap(self._a.copy())

    def __deepcopy__(self, memo):
        return _wrap(self._a.copy())

    def __reduce__(self):
        return (asarray, (self._a,))

    # -- indexing
    def __getitem__(self, key):
        k = _unwrap_key(key)
        r = self._a[k]
        if type(r) is _np.ndarray:
            obj = ndarray.__new__(ndarray)
            obj._a = r
            return obj
        # an element: CuPy gives a 0-d view, so index once more with a trailing Ellipsis
        kt = k if type(k) is tuple else (k,)
        if not _b.any(x is Ellipsis for x in kt):
            r = self._a[kt + (Ellipsis,)]
        return _wrap(r)

    def __setitem__(self, key, value):
        self._a[_unwrap_key(key)] = _fill_value(value)

    # -- attributes
    shape = property(lambda self: self._a.shape,
                     lambda self, s: setattr(self._a, "shape", s))
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    dtype = property(lambda self: self._a.dtype)
    strides = property(lambda self: self._a.strides)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: _wrap(self._a.T))
    mT = property(lambda self: _wrap(self._a.mT))
    device = property(lambda self: "strict")

    @property
    def real(self):
        return _wrap(self._a.real)

    @real.setter
    def real(self, v):
        self._a.real = _unwrap(v, "ndarray.real")

    @property
    def imag(self):
        return _wrap(self._a.imag)

    @imag.setter
    def imag(self, v):
        self._a.imag = _unwrap(v, "ndarray.imag")

    @property
    def base(self):
        b = self._a.base
        return _wrap(b) if type(b) is _np.ndarray else None

    # -- transfers and special methods
    def get(self, stream=None, order="C", out=None, blocking=True):
        if out is not None:
            _np.copyto(out, self._a)
            return out
        return _np.array(self._a, order=order, copy=True)

    def set(self, arr, stream=None):
        if not isinstance(arr, _np.ndarray) or arr.shape != self._a.shape:
            raise ValueError(f"set: expected a numpy.ndarray of shape {self._a.shape} ({_TAG})")
        self._a[...] = arr

    def sort(self, axis=-1, kind=None):
        _sort_kind(kind)
        if not (self._a.flags.c_contiguous or self._a.flags.f_contiguous):
            raise NotImplementedError("Sorting non-contiguous array is not supported. "
                                      f"({_TAG})")
        self._a.sort(axis=axis, kind="stable")

    def argsort(self, axis=-1, kind=None):
        _sort_kind(kind)
        return _wrap(self._a.argsort(axis=axis, kind="stable"))

    def fill(self, value):
        self._a.fill(_fill_value(value))

    def ptp(self, axis=None, out=None, keepdims=False):
        return _wrap(_np.ptp(self._a, axis=axis, keepdims=keepdims))

    def dot(self, b, out=None):
        return _NS["dot"](self, b, out)

    def scatter_add(self, slices, value):
        _NS["add"].at(self, slices, value)

    def scatter_max(self, slices, value):
        _NS["maximum"].at(self, slices, value)

    def scatter_min(self, slices, value):
        _NS["minimum"].at(self, slices, value)

    def __matmul__(self, other):
        if not isinstance(other, (ndarray, _np.ndarray, list)):
            return NotImplemented
        return _NS["matmul"](self, other)

    def __rmatmul__(self, other):
        if not isinstance(other, (ndarray, _np.ndarray, list)):
            return NotImplemented
        return _NS["matmul"](other, self)

    def __divmod__(self, other):
        return _NS["divmod"](self, other)

    def __rdivmod__(self, other):
        return _NS["divmod"](other, self)


# operand types an operator handles (host arrays and lists only to refuse them, as CuPy does);
# anything else (a minidl Tensor) gets NotImplemented so that its reflected operator runs
_OPERANDS = (ndarray, *_SCALARS, _np.ndarray, list)
_SPECIAL = set(vars(ndarray))  # hand-written members: the manifest's methods skip them
_OPS = {"add": "add", "sub": "subtract", "mul": "multiply", "truediv": "true_divide",
        "floordiv": "floor_divide", "mod": "remainder", "pow": "power", "and": "bitwise_and",
        "or": "bitwise_or", "xor": "bitwise_xor", "lshift": "left_shift",
        "rshift": "right_shift"}
for _op, _uf in _OPS.items():
    setattr(ndarray, f"__{_op}__", _binop(_uf))
    setattr(ndarray, f"__r{_op}__", _binop(_uf, reflected=True))
    setattr(ndarray, f"__i{_op}__", _ibinop(_uf))
for _op, _uf in {"lt": "less", "le": "less_equal", "gt": "greater", "ge": "greater_equal",
                 "eq": "equal", "ne": "not_equal"}.items():
    setattr(ndarray, f"__{_op}__", _binop(_uf))
for _op, _uf in {"neg": "negative", "pos": "positive", "abs": "absolute",
                 "invert": "invert"}.items():
    setattr(ndarray, f"__{_op}__", _unop(_uf))


# --------------------------------------------------------------------------- transfers

@_public
def asarray(a, dtype=None, order=None, *, blocking=False):
    """Host data (``numpy.ndarray``, scalars, nested lists) -> a strict array (a copy).

    Strict arrays pass through (cast when ``dtype`` differs), as in ``cupy.asarray``.
    """
    if type(a) is ndarray:
        if dtype is None or _np.dtype(dtype) == a._a.dtype:
            return a
        return _wrap(a._a.astype(dtype))
    return _wrap(_np.array(_unwrap_lenient(a), dtype=dtype, order=order or "K", copy=True))


@_public
def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False):
    """``cupy.array``: like :func:`asarray` but copies strict arrays too."""
    return _wrap(_np.array(_unwrap_lenient(obj), dtype=dtype, copy=True, order=order,
                           ndmin=ndmin))


@_public
def asnumpy(a, stream=None, order="C", out=None, *, blocking=True):
    """Strict array -> ``numpy.ndarray`` (a copy); other input goes through ``numpy.asarray``."""
    if type(a) is ndarray:
        return a.get(order=order, out=out)
    return _np.asarray(a, order=order)

