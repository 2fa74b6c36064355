"""A strict CuPy-like array backend on host memory, for proving the GPU path without a GPU.

``ndarray`` wraps a ``numpy.ndarray`` and behaves like ``cupy.ndarray`` where the two differ in
ways that break ported code (facts: ``/shared/cupy/README.md``; names and signatures: the
CuPy 14.2 manifest read by :mod:`minidl.testing._strict_manifest`):

* no implicit conversion to NumPy: ``__array__`` raises ``TypeError`` (so ``np.asarray(x)``,
  SciPy functions and ``np.float32(x)`` fail); ``float``/``int``/``bool`` work only where NumPy
  would convert a single element (CuPy calls ``.get()``); no ``__index__``;
* reductions and scalar indexing return 0-d arrays, never NumPy scalars;
* this module is the ``xp`` namespace: only names CuPy 14.2 has (``xp.errstate``, ``xp.insert``
  raise ``AttributeError``), each call checked against CuPy's signature (``xp.clip(x, min=0)``,
  ``x.sum(where=m)`` raise ``TypeError``);
* ufuncs refuse host arrays and lists, have ``.at`` / ``.reduce`` / ``.accumulate`` only where
  CuPy does; ``a[...] = numpy_array`` raises ``ValueError`` as in CuPy (gh-2079);
* ``random.default_rng`` gives a Generator with only CuPy's methods (no ``normal``,
  ``permutation``, ``choice``, ``shuffle``);
* NEP 18/13: ``np.sum(x)`` dispatches to ``sum`` here (as CuPy does); ``np.insert(x)`` raises.

Transfers are explicit: :func:`asarray` (host -> strict, a copy), :func:`asnumpy` and
``x.get()`` (strict -> host, a copy).  Everything runs on NumPy, so values equal NumPy's.

Known gaps (``tests/minidl/testing/test_cupy_fidelity.py`` compares the refusals with real CuPy):

* more lenient than CuPy: value-level ``NotImplementedError``s are emulated only for sort
  ``kind``, ``histogram(bins=str)``, ``pad`` modes, writeable ``sliding_window_view`` and
  non-numeric dtypes; duplicate indices in ``a[idx] = v`` take the last value (undefined in
  CuPy); random methods and ``cupyx.scipy.ndimage`` weights accept host arrays (as CuPy's do);
  NumPy index arrays in ``a[idx]`` pass; callbacks (``apply_along_axis``) receive NumPy arrays;
  ``flags`` is NumPy's object.
* stricter than CuPy: every function refuses host arrays, also where CuPy's duck-types them
  (``cupy.sum(numpy_array)`` returns NumPy's result); out-of-bounds integer indices raise
  ``IndexError`` (CuPy wraps around), and so does an ``as_strided`` view that reaches outside its
  array's memory (a fault on the GPU); keyword arguments are checked by CuPy's names but passed to
  NumPy as given; ``data``, ``flat``, ``toDlpack`` and other device-only members are absent.
"""
from __future__ import annotations

import builtins as _b
import math as _math
import sys as _sys
import types as _types

import numpy as _np

from minidl.testing import _strict_manifest as _m

_VERSION = _m.cupy_version()
_TAG = f"minidl strict backend, emulating CuPy {_VERSION}"
_SCALARS = (bool, int, float, complex, _np.generic)
_SEQ = (list, tuple)
_BAD_KINDS = frozenset("OUSVMm")  # CuPy 14 has numeric and bool dtypes only


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


def _host_error(where):
    return TypeError(
        f"{where}: got a host numpy.ndarray where a device array is needed. CuPy does not mix "
        "host and device arrays implicitly; move it with xp.asarray(...) first "
        f"({_TAG}).")


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


class _Checker:
    """A CuPy signature, parsed once.  ``check`` accepts the common call shapes from tables
    (positional count, keyword names) and falls back to a full ``bind`` for the rest, which
    raises TypeError naming CuPy's signature."""

    __slots__ = ("sig", "qualname", "lo", "hi", "kw_after", "req_after")

    def __init__(self, qualname, sig_text):
        self.qualname = qualname
        self.sig = _m.parse_signature(sig_text)
        P = _m._P
        params = list(self.sig.parameters.values())
        pos = [p for p in params if p.kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD)]
        var = _b.any(p.kind == P.VAR_POSITIONAL for p in params)
        self.lo = _b.sum(p.default is P.empty for p in pos)
        self.hi = _math.inf if var else len(pos)
        if _b.any(p.kind == P.VAR_KEYWORD for p in params):
            self.kw_after = None  # anything goes by keyword: always bind when kwargs are given
            self.req_after = None
        else:
            # kw_after[n]: names a call with n positional arguments may still pass by keyword
            self.kw_after, self.req_after = [], []
            for n in range(len(pos) + 1):
                rest = [p for p in params[n:] if p.kind in (P.POSITIONAL_OR_KEYWORD,
                                                            P.KEYWORD_ONLY)]
                self.kw_after.append(frozenset(p.name for p in rest))
                self.req_after.append(frozenset(p.name for p in rest if p.default is P.empty))
        if _b.any(p.kind == P.KEYWORD_ONLY and p.default is P.empty for p in params):
            self.lo = _math.inf  # a required keyword-only argument: let bind decide

    def check(self, args, kwargs):
        n = len(args)
        if not kwargs:
            if self.lo <= n <= self.hi:
                return
        elif self.kw_after is not None and n < len(self.kw_after):
            keys = kwargs.keys()
            if keys <= self.kw_after[n] and self.req_after[n] <= keys:
                return
        _m.bind(self.sig, self.qualname, args, kwargs)


def _missing(qualname):
    return AttributeError(f"{qualname} does not exist in CuPy {_VERSION} ({_TAG})")


def _not_emulated(qualname):
    return AttributeError(f"{qualname} exists in CuPy {_VERSION} but is not emulated by the "
                          f"{_TAG.split(',')[0]} (no NumPy equivalent)")


# --------------------------------------------------------------------------- functions

def _function(qualname, np_func, sig_text, *, host_ok=False, post=None):
    """A strict twin of ``np_func`` with CuPy's signature ``sig_text``."""
    checker = _Checker(qualname, sig_text) if sig_text else None
    unwrap = _unwrap_lenient if host_ok else _unwrap
    name = qualname.rpartition(".")[2]

    def f(*args, **kwargs):
        if checker is not None:
            checker.check(args, kwargs)
        if host_ok:
            args = unwrap(args)
            kwargs = {k: unwrap(v) for k, v in kwargs.items()} if kwargs else kwargs
        else:
            args = unwrap(args, qualname)
            kwargs = {k: unwrap(v, qualname) for k, v in kwargs.items()} if kwargs else kwargs
        r = np_func(*args, **kwargs)
        return _wrap(r) if post is None else post(r, args, kwargs)

    f.__name__ = f.__qualname__ = name
    f.__doc__ = f"Strict twin of ``{qualname}{sig_text or '(...)'}`` (runs NumPy's ``{name}``)."
    return f


# --------------------------------------------------------------------------- ufuncs

class ufunc:
    """A CuPy-like universal function over strict arrays (NumPy's ufunc does the work)."""

    def __init__(self, name, np_func, entry):
        self.__name__ = name
        self._np = np_func
        self.nin, self.nout = entry["nin"], entry["nout"]
        self._at, self._reduce = entry.get("at", False), entry.get("reduce", False)
        self._reduceat = entry.get("reduceat", False)
        sig = entry.get("sig") or _m.ufunc_signature(self.nin, self.nout)
        self._checker = _Checker(f"cupy.{name}", sig)

    def __repr__(self):
        return f"<strict ufunc '{self.__name__}'>"

    def _inputs(self, args):
        out = []
        for a in args:
            if type(a) is ndarray:
                out.append(a._a)
            elif isinstance(a, _SCALARS):
                out.append(a)
            else:
                raise TypeError(
                    "Universal Functions only work with CuPy array or scalar. They do not "
                    f"accept other objects (e.g., lists or numpy.ndarray); {self.__name__}() "
                    f"got {type(a).__module__}.{type(a).__name__} ({_TAG})")
        return out

    def __call__(self, *args, **kwargs):
        if not kwargs and len(args) == self.nin:
            return _wrap(self._np(*self._inputs(args)))
        self._checker.check(args, kwargs)
        ins = self._inputs(args[:self.nin])
        outs = args[self.nin:] or kwargs.pop("out", None)
        if outs is not None:
            outs = outs if isinstance(outs, tuple) else (outs,)
            for o in outs:
                if type(o) is not ndarray:
                    raise TypeError(f"{self.__name__}: out must be a cupy.ndarray, got "
                                    f"{type(o).__name__} ({_TAG})")
            kwargs["out"] = tuple(o._a for o in outs)
        r = self._np(*ins, **kwargs)
        if outs is not None:
            return outs[0] if len(outs) == 1 else outs
        return _wrap(r)

    def _unsupported(self, method):
        name = self._np.__name__ if isinstance(self._np, _np.ufunc) else self.__name__
        return NotImplementedError(f"cupy_{name}.{method} is not supported yet "
                                   f"({_TAG})")

    def _array_arg(self, a, method):
        if type(a) is tuple and len(a) == 1:  # NEP 13 hands ``out`` over as a 1-tuple
            a = a[0]
        if type(a) is not ndarray:
            raise TypeError(f"{self.__name__}.{method}: expected a cupy.ndarray, got "
                            f"{type(a).__module__}.{type(a).__name__} ({_TAG})")
        return a._a

    def at(self, a, indices, b=None):
        if not self._at:
            raise self._unsupported("at")
        arr = self._array_arg(a, "at")
        idx = _unwrap(indices, f"{self.__name__}.at") if isinstance(indices, _SEQ) \
            else _unwrap_key(indices)
        if type(idx) is _np.ndarray and type(indices) is _np.ndarray:
            raise _host_error(f"{self.__name__}.at")
        if b is None:
            self._np.at(arr, idx)
        else:
            self._np.at(arr, idx, *self._inputs((b,)))

    def reduce(self, array, axis=0, dtype=None, out=None, keepdims=False):
        if not self._reduce:
            raise self._unsupported("reduce")
        r = self._np.reduce(self._array_arg(array, "reduce"), axis=axis, dtype=dtype,
                            out=None if out is None else self._array_arg(out, "reduce"),
                            keepdims=keepdims)
        return _wrap(r) if out is None else (out[0] if type(out) is tuple else out)

    def accumulate(self, array, axis=0, dtype=None, out=None):
        if not self._reduce:
            raise self._unsupported("accumulate")
        r = self._np.accumulate(self._array_arg(array, "accumulate"), axis=axis, dtype=dtype,
                                out=None if out is None else self._array_arg(out, "accumulate"))
        return _wrap(r) if out is None else (out[0] if type(out) is tuple else out)

    def reduceat(self, array, indices, axis=0, dtype=None, out=None):
        if not self._reduceat:
            raise self._unsupported("reduceat")
        r = self._np.reduceat(self._array_arg(array, "reduceat"),
                              _unwrap(indices, "reduceat"), axis=axis, dtype=dtype)
        return _wrap(r)

    def outer(self, A, B, **kwargs):
        return _wrap(self._np.outer(*self._inputs((A, B)), **kwargs))


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
        target = _sys.modules[__name__]
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
        if not isinstance(strict_uf, ufunc):
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
_SPECIAL = set(vars(ndarray))
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


def _method(name, sig_text):
    checker = _Checker(f"cupy.ndarray.{name}", sig_text)

    def m(self, *args, **kwargs):
        checker.check(args, kwargs)
        if args:
            args = _unwrap(args, f"ndarray.{name}")
        if kwargs:
            kwargs = {k: _unwrap(v, f"ndarray.{name}") for k, v in kwargs.items()}
        return _wrap(getattr(self._a, name)(*args, **kwargs))

    m.__name__ = name
    m.__doc__ = f"``cupy.ndarray.{name}{sig_text}`` (runs NumPy's)."
    return m


def _install_methods():
    for name, sig in _NDARRAY_SIGS.items():
        if name in _SPECIAL or sig is None or not hasattr(_np.ndarray, name):
            continue
        setattr(ndarray, name, _method(name, sig))
    for name in ("sort", "argsort", "ptp", "dot"):  # keep CuPy's signature check
        special = getattr(ndarray, name)
        checker = _Checker(f"cupy.ndarray.{name}", _NDARRAY_SIGS[name])

        def checked(self, *a, _f=special, _c=checker, **k):
            _c.check(a, k)
            return _f(self, *a, **k)
        checked.__name__ = name
        setattr(ndarray, name, checked)


_install_methods()


# --------------------------------------------------------------------------- transfers

def asarray(a, dtype=None, order=None, *, blocking=False):
    """Host data (``numpy.ndarray``, scalars, nested lists) -> a strict array (a copy).

    Strict arrays pass through (cast when ``dtype`` differs), as in ``cupy.asarray``.
    """
    if type(a) is ndarray:
        if dtype is None or _np.dtype(dtype) == a._a.dtype:
            return a
        return _wrap(a._a.astype(dtype))
    return _wrap(_np.array(_unwrap_lenient(a), dtype=dtype, order=order or "K", copy=True))


def array(obj, dtype=None, copy=True, order="K", subok=False, ndmin=0, *, blocking=False):
    """``cupy.array``: like :func:`asarray` but copies strict arrays too."""
    return _wrap(_np.array(_unwrap_lenient(obj), dtype=dtype, copy=True, order=order,
                           ndmin=ndmin))


def asnumpy(a, stream=None, order="C", out=None, *, blocking=True):
    """Strict array -> ``numpy.ndarray`` (a copy); other input goes through ``numpy.asarray``."""
    if type(a) is ndarray:
        return a.get(order=order, out=out)
    return _np.asarray(a, order=order)


def get_array_module(*args):
    return _sys.modules[__name__]


def copyto(dst, src, casting="same_kind", where=None):
    if type(src) is _np.ndarray:
        if src.size != 1:
            raise ValueError(f"non-scalar numpy.ndarray cannot be used for copyto ({_TAG})")
        src = src.squeeze()[()]
    _np.copyto(_unwrap(dst, "copyto"), _unwrap(src, "copyto"), casting=casting,
               where=True if where is None else _unwrap(where, "copyto"))


def _sort_func(np_name):
    def f(a, axis=-1, kind=None):
        _sort_kind(kind)
        return _wrap(getattr(_np, np_name)(_unwrap(a, np_name), axis=axis, kind="stable"))
    f.__name__ = np_name
    return f


def _histogram(x, bins=10, range=None, density=None, weights=None):
    if isinstance(bins, str):
        raise NotImplementedError(f"only integer and array bins are implemented ({_TAG})")
    return _wrap(_np.histogram(_unwrap(x, "histogram"), _unwrap(bins, "histogram"), range,
                               density=density, weights=_unwrap(weights, "histogram")))


_PAD_KWARGS = {"empty": (), "edge": (), "wrap": (), "constant": ("constant_values",),
               "linear_ramp": ("end_values",), "maximum": ("stat_length",),
               "mean": ("stat_length",), "minimum": ("stat_length",),
               "reflect": ("reflect_type",), "symmetric": ("reflect_type",)}


def _pad(array, pad_width, mode="constant", **kwargs):
    if callable(mode):
        raise NotImplementedError(f"pad with a callable mode is not emulated ({_TAG})")
    if mode not in _PAD_KWARGS:
        raise ValueError(f"mode '{mode}' is not supported ({_TAG})")
    bad = set(kwargs) - set(_PAD_KWARGS[mode])
    if bad:
        raise ValueError(f"unsupported keyword arguments for mode '{mode}': {bad} ({_TAG})")
    return _wrap(_np.pad(_unwrap(array, "pad"), _unwrap(pad_width, "pad"), mode=mode,
                         **{k: _unwrap(v, "pad") for k, v in kwargs.items()}))


class _IndexTrick:
    def __init__(self, np_obj):
        self._np = np_obj

    def __getitem__(self, key):
        return _wrap(self._np[_unwrap(key, "index trick") if isinstance(key, _SEQ)
                              else _unwrap_key(key)])


_CUSTOM = {"asarray": asarray, "array": array, "asnumpy": asnumpy, "copyto": copyto,
           "get_array_module": get_array_module, "sort": _sort_func("sort"),
           "argsort": _sort_func("argsort"), "histogram": _histogram, "pad": _pad}
_ABSENT = object()
# CuPy classes that take arrays: NumPy's would call __array__, so they are not offered
_TYPE_SKIP = {"vectorize", "broadcast", "flatiter", "poly1d", "format_parser", "DataSource"}
# CuPy copies host data given to these (the ``*_like`` ones only read its shape and dtype)
_HOST_OK = {"asanyarray", "zeros_like", "ones_like", "empty_like", "full_like"}
# CuPy returns a 0-d array where NumPy returns a Python bool or int
_ARRAY_RESULT = {"allclose", "array_equal", "array_equiv", "count_nonzero"}


# --------------------------------------------------------------------------- namespaces

class _Namespace(_types.ModuleType):
    """A submodule (``random``, ``linalg`` ...) that names what CuPy lacks when asked."""

    def __init__(self, qualname, members, cupy_names):
        super().__init__(qualname)
        self.__dict__.update(members)
        self._cupy_names = cupy_names

    def __getattr__(self, name):
        cupy_name = self.__name__.replace("minidl.testing.strict", "cupy")
        if name.startswith("__"):
            raise AttributeError(name)
        if name in self._cupy_names:
            raise _not_emulated(f"{cupy_name}.{name}")
        raise _missing(f"{cupy_name}.{name}")


def _build(cupy_ns, np_mod, custom=None, host_ok=()):
    """Strict members for the manifest namespace ``cupy_ns`` backed by ``np_mod``."""
    custom = custom or {}
    out = {}
    for name, entry in _m.namespace(cupy_ns).items():
        kind = entry["kind"]
        if name in custom:
            out[name] = custom[name]
            continue
        np_obj = getattr(np_mod, name, _ABSENT)
        if np_obj is _ABSENT or name == "annotations" or name in _TYPE_SKIP:
            continue
        if kind == "ufunc":
            out[name] = ufunc(name, np_obj, entry)
        elif kind == "function":
            if callable(np_obj):
                post = (lambda r, a, k: _wrap(_np.asarray(r))) if name in _ARRAY_RESULT else None
                out[name] = _function(f"{cupy_ns}.{name}", np_obj, entry.get("sig"),
                                      host_ok=name in host_ok, post=post)
        elif kind == "type" and isinstance(np_obj, type):
            out[name] = np_obj
        elif kind == "value" and not isinstance(np_obj, _types.ModuleType):
            out[name] = _IndexTrick(np_obj) if name in ("r_", "c_", "mgrid", "ogrid") else np_obj
    return out


_NS: dict = _build("cupy", _np, _CUSTOM, _HOST_OK)
_NS["ndarray"] = ndarray
_NS["ufunc"] = ufunc
globals().update(_NS)


def _sub(qualname, cupy_ns, members):
    mod = _Namespace(f"{__name__}.{qualname}", members, set(_m.namespace(cupy_ns)))
    _sys.modules[mod.__name__] = mod
    return mod


linalg = _sub("linalg", "cupy.linalg", _build("cupy.linalg", _np.linalg))
fft = _sub("fft", "cupy.fft", _build("cupy.fft", _np.fft))


# NumPy 2 moved byte_bounds into numpy.lib.array_utils
_byte_bounds = getattr(getattr(_np.lib, "array_utils", None), "byte_bounds", None) or getattr(
    _np, "byte_bounds", None)


def _as_strided(x, shape=None, strides=None):
    """``as_strided`` that refuses a view reaching outside the memory of ``x``'s allocation:
    NumPy reads whatever lies there, CuPy's kernels fault (an illegal memory access that poisons
    the whole CUDA context) or read another array's data."""
    a = _unwrap(x, "as_strided")
    view = _np.lib.stride_tricks.as_strided(a, shape, strides)
    owner = a
    while isinstance(owner.base, _np.ndarray):
        owner = owner.base
    lo, hi = _byte_bounds(owner)
    vlo, vhi = _byte_bounds(view)
    if view.size and (vlo < lo or vhi > hi):
        raise IndexError(
            f"as_strided: shape {view.shape} with strides {view.strides} reaches "
            f"{max(lo - vlo, 0)} bytes before and {max(vhi - hi, 0)} bytes past the memory of "
            f"the array it views ({hi - lo} bytes); on CuPy that is an illegal memory access "
            f"({_TAG})")
    return _wrap(view)


def _sliding_window_view(x, window_shape, axis=None, *, subok=False, writeable=False):
    if writeable:
        raise NotImplementedError(f"Writeable views are not supported. ({_TAG})")
    return _wrap(_np.lib.stride_tricks.sliding_window_view(
        _unwrap(x, "sliding_window_view"), window_shape, axis=axis))


def _checked(qualname, sig_text, impl):
    checker = _Checker(qualname, sig_text)

    def f(*args, **kwargs):
        checker.check(args, kwargs)
        return impl(*args, **kwargs)
    f.__name__ = impl.__name__
    f.__doc__ = impl.__doc__
    return f


_st = _m.namespace("cupy.lib.stride_tricks")
lib = _types.ModuleType(f"{__name__}.lib")
lib.stride_tricks = _sub("lib.stride_tricks", "cupy.lib.stride_tricks", {
    "as_strided": _checked("as_strided", _st["as_strided"]["sig"], _as_strided),
    "sliding_window_view": _checked("sliding_window_view", _st["sliding_window_view"]["sig"],
                                    _sliding_window_view)})
_sys.modules[lib.__name__] = lib

# checks that cannot be a plain name lookup
for _name in ("sort", "argsort", "histogram", "copyto", "pad"):
    _entry = _m.namespace("cupy").get(_name)
    if _entry and _entry.get("sig"):
        globals()[_name] = _NS[_name] = _checked(f"cupy.{_name}", _entry["sig"], _NS[_name])


# --------------------------------------------------------------------------- random

# NumPy's own Generator methods that take ``dtype``; elsewhere the strict twin casts afterwards
_NP_GEN_DTYPE = {"random", "standard_normal", "standard_exponential", "standard_gamma",
                 "integers"}


def _rng_call(qualname, sig_text, np_accepts_dtype):
    """``(call)(np_target, args, kwargs)``: CuPy's signature checked, ``dtype`` emulated."""
    checker = _Checker(qualname, sig_text)
    names = list(checker.sig.parameters)
    i_dtype = names.index("dtype") if "dtype" in names else None

    def call(np_target, name, args, kwargs):
        checker.check(args, kwargs)
        dtype = None
        if not np_accepts_dtype and i_dtype is not None:
            if len(args) > i_dtype:
                dtype, args = args[i_dtype], args[:i_dtype] + args[i_dtype + 1:]
            dtype = kwargs.pop("dtype", dtype)
        elif not np_accepts_dtype and "dtype" in kwargs:  # (*size, **kwarg) of rand/randn
            dtype = kwargs.pop("dtype")
        out = kwargs.get("out")
        kwargs = {k: _unwrap_lenient(v) for k, v in kwargs.items()}
        r = getattr(np_target, name)(*_unwrap_lenient(args), **kwargs)
        if type(out) is ndarray:
            return out
        if dtype is not None:
            r = _np.asarray(r).astype(dtype, copy=False)
        return _wrap(r)
    return call


def _rng_class(label, np_cls, methods, np_dtype_ok):
    """A wrapper class exposing only ``methods`` (CuPy's) of a NumPy random object."""
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise _missing(f"cupy.random.{label}.{name}")

    ns = {"__slots__": ("_np",), "__getattr__": __getattr__,
          "__repr__": lambda self: f"strict {label}({self._np!r})",
          "__doc__": f"``cupy.random.{label}`` on NumPy's: only the methods CuPy's has."}
    for name, sig in methods.items():
        if sig is None or not hasattr(np_cls, name):
            continue
        call = _rng_call(f"cupy.random.{label}.{name}", sig, name in np_dtype_ok)

        def m(self, *args, _name=name, _call=call, **kwargs):
            return _call(self._np, _name, args, kwargs)
        m.__name__ = name
        ns[name] = m
    return type(label, (), ns)


_man = _m.manifest()
_Generator = _rng_class("Generator", _np.random.Generator, _man["random.Generator"],
                        _NP_GEN_DTYPE)
_RandomState = _rng_class("RandomState", _np.random.RandomState, _man["random.RandomState"],
                          {"randint"})


def _new(cls, np_obj):
    obj = cls.__new__(cls)
    obj._np = np_obj
    return obj


def _random_members():
    members = {}
    for name, entry in _m.namespace("cupy.random").items():
        if entry["kind"] != "function" or not hasattr(_np.random, name):
            continue
        call = _rng_call(f"cupy.random.{name}", entry["sig"], name == "randint")

        def f(*args, _name=name, _call=call, **kwargs):
            return _call(_np.random, _name, args, kwargs)
        f.__name__ = name
        members[name] = f
    members["default_rng"] = lambda seed=None: _new(_Generator, _np.random.default_rng(
        int(seed) if type(seed) is ndarray else seed))
    members["get_random_state"] = lambda: _new(_RandomState, _np.random.mtrand._rand)
    members["Generator"] = _Generator
    members["RandomState"] = lambda seed=None: _new(_RandomState, _np.random.RandomState(seed))
    return members


random = _sub("random", "cupy.random", _random_members())
_NS.update(linalg=linalg, fft=fft, lib=lib, random=random)


# --------------------------------------------------------------------------- cupyx

def _ndimage_function(name, np_func, sig_text):
    checker = _Checker(f"cupyx.scipy.ndimage.{name}", sig_text) if sig_text else None

    def f(input, *args, **kwargs):
        if checker is not None:
            checker.check((input,) + args, kwargs)
        if type(input) is not ndarray:
            raise TypeError(f"cupyx.scipy.ndimage.{name}: input must be a cupy.ndarray, got "
                            f"{type(input).__module__}.{type(input).__name__} ({_TAG})")
        kwargs = {k: _unwrap_lenient(v) for k, v in kwargs.items()}
        output = kwargs.get("output")
        r = np_func(input._a, *_unwrap_lenient(args), **kwargs)
        if isinstance(output, _np.ndarray) and r is None:
            return None
        return _wrap(r)
    f.__name__ = name
    return f


def _load_ndimage():
    import scipy.ndimage as sn

    members = {}
    for name, entry in _m.namespace("cupyx.scipy.ndimage").items():
        fn = getattr(sn, name, None)
        if callable(fn):
            members[name] = _ndimage_function(name, fn, entry.get("sig"))
    return members


class _LazyNamespace(_Namespace):
    def __init__(self, qualname, loader, cupy_ns):
        super().__init__(qualname, {}, set(_m.namespace(cupy_ns)))
        self._loader = loader

    def __getattr__(self, name):
        if self._loader is not None and not name.startswith("__"):
            loader, self._loader = self._loader, None
            self.__dict__.update(loader())
            if name in self.__dict__:
                return self.__dict__[name]
        return super().__getattr__(name)


_cx = _m.namespace("cupyx")
_errstate_check = _Checker("cupyx.errstate", _cx["errstate"]["sig"])


def _errstate(**kwargs):
    _errstate_check.check((), kwargs)
    kwargs.pop("linalg", None)
    return _np.errstate(**kwargs)


def _scatter(uf_name):
    def f(a, slices, value):
        _NS[uf_name].at(a, slices, value)
    f.__name__ = f"scatter_{uf_name[:3]}"
    return f


cupyx = _Namespace(f"{__name__}.cupyx", {}, set(_cx))
cupyx.errstate = _errstate
cupyx.seterr = _np.seterr
cupyx.geterr = _np.geterr
cupyx.scatter_add = _scatter("add")
cupyx.scatter_max = _scatter("maximum")
cupyx.scatter_min = _scatter("minimum")
cupyx.rsqrt = ufunc("rsqrt", lambda x, **kw: 1.0 / _np.sqrt(x, **kw), _cx["rsqrt"])
cupyx.scipy = _types.ModuleType(f"{__name__}.cupyx.scipy")
cupyx.scipy.ndimage = _LazyNamespace(f"{__name__}.cupyx.scipy.ndimage", _load_ndimage,
                                     "cupyx.scipy.ndimage")
_sys.modules[cupyx.__name__] = cupyx


# --------------------------------------------------------------------------- module lookup

_CUPY_NAMES = set(_m.namespace("cupy"))
_PUBLIC_EXTRA = {"cupyx"}  # not a cupy name: the strict twin of the cupyx package


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    if name in _CUPY_NAMES:
        raise _not_emulated(f"cupy.{name}")
    raise _missing(f"cupy.{name}")


def __dir__():
    return sorted(n for n in globals() if not n.startswith("_"))
