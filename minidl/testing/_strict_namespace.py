"""Strict twins built from the CuPy manifest: a function for every ``cupy`` name NumPy also
has (:func:`_build`, with CuPy's signature checked), a method for every ``cupy.ndarray`` method
NumPy's ndarray has (:func:`_install_methods`), and the sub-namespace modules that name what CuPy
lacks when asked (:class:`_Namespace`, :class:`_LazyNamespace`, :func:`_sub`).
"""
from __future__ import annotations

import sys as _sys
import types as _types

import numpy as _np

from minidl.testing import _strict_manifest as _m
from minidl.testing._strict_array import (
    _NDARRAY_SIGS, _SPECIAL, _unwrap, _unwrap_key, _unwrap_lenient, _wrap, ndarray)
from minidl.testing._strict_core import FRONT, _SEQ, _Checker, _missing, _not_emulated
from minidl.testing._strict_ufunc import ufunc

_ABSENT = object()
# CuPy classes that take arrays: NumPy's would call __array__, so they are not offered
_TYPE_SKIP = {"vectorize", "broadcast", "flatiter", "poly1d", "format_parser", "DataSource"}
# CuPy copies host data given to these (the ``*_like`` ones only read its shape and dtype)
_HOST_OK = {"asanyarray", "zeros_like", "ones_like", "empty_like", "full_like"}
# CuPy returns a 0-d array where NumPy returns a Python bool or int
_ARRAY_RESULT = {"allclose", "array_equal", "array_equiv", "count_nonzero"}


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
    f.__module__ = FRONT  # pickles find ``cupy`` twins by name in the front, as NumPy's by name
    f.__doc__ = f"Strict twin of ``{qualname}{sig_text or '(...)'}`` (runs NumPy's ``{name}``)."
    return f


# --------------------------------------------------------------------------- ndarray methods

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
    """Add to ``ndarray`` the manifest's methods it does not define by hand."""
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


# --------------------------------------------------------------------------- namespaces

class _IndexTrick:
    """``r_`` / ``c_`` / ``mgrid`` / ``ogrid``: NumPy's index trick, indexed with strict arrays."""

    def __init__(self, np_obj):
        self._np = np_obj

    def __getitem__(self, key):
        return _wrap(self._np[_unwrap(key, "index trick") if isinstance(key, _SEQ)
                              else _unwrap_key(key)])


class _Namespace(_types.ModuleType):
    """A submodule (``random``, ``linalg`` ...) that names what CuPy lacks when asked."""

    def __init__(self, qualname, members, cupy_names):
        super().__init__(qualname)
        self.__dict__.update(members)
        self._cupy_names = cupy_names

    def __getattr__(self, name):
        cupy_name = self.__name__.replace(FRONT, "cupy")
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


class _LazyNamespace(_Namespace):
    """A :class:`_Namespace` whose members ``loader()`` gives on first access (SciPy loads late)."""

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


def _sub(qualname, cupy_ns, members):
    """The sub-namespace ``minidl.testing.strict.<qualname>`` (registered in ``sys.modules``)."""
    mod = _Namespace(f"{FRONT}.{qualname}", members, set(_m.namespace(cupy_ns)))
    _sys.modules[mod.__name__] = mod
    return mod
