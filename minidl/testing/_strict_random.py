"""The strict ``random`` namespace: CuPy's module-level functions and its ``Generator`` /
``RandomState`` classes on NumPy's, exposing only the methods CuPy's have (no ``normal``,
``permutation``, ``choice``, ``shuffle`` on a Generator), each call checked against CuPy's
signature and ``dtype`` emulated where NumPy's method has none.
"""
from __future__ import annotations

import numpy as _np

from minidl.testing import _strict_manifest as _m
from minidl.testing._strict_array import _unwrap_lenient, _wrap, ndarray
from minidl.testing._strict_core import FRONT, _Checker, _missing

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

    ns = {"__slots__": ("_np",), "__getattr__": __getattr__, "__module__": FRONT,
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
    """``{name: twin}`` of ``cupy.random``."""
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
