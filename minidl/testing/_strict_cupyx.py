"""The strict ``cupyx``: ``errstate`` / ``seterr`` / ``geterr``, ``scatter_add`` / ``_max`` /
``_min`` (``ufunc.at`` of the front's ufuncs), ``rsqrt``, and ``cupyx.scipy.ndimage`` (SciPy's
functions behind CuPy's signatures, loaded on first use).
"""
from __future__ import annotations

import sys as _sys
import types as _types

import numpy as _np

from minidl.testing import _strict_manifest as _m
from minidl.testing._strict_array import _unwrap_lenient, _wrap, ndarray
from minidl.testing._strict_core import _NS, FRONT, _TAG, _Checker
from minidl.testing._strict_namespace import _LazyNamespace, _Namespace
from minidl.testing._strict_ufunc import ufunc


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


def _cupyx():
    """The ``minidl.testing.strict.cupyx`` namespace (registered in ``sys.modules``)."""
    cupyx = _Namespace(f"{FRONT}.cupyx", {}, set(_cx))
    cupyx.errstate = _errstate
    cupyx.seterr = _np.seterr
    cupyx.geterr = _np.geterr
    cupyx.scatter_add = _scatter("add")
    cupyx.scatter_max = _scatter("maximum")
    cupyx.scatter_min = _scatter("minimum")
    cupyx.rsqrt = ufunc("rsqrt", lambda x, **kw: 1.0 / _np.sqrt(x, **kw), _cx["rsqrt"])
    cupyx.scipy = _types.ModuleType(f"{FRONT}.cupyx.scipy")
    cupyx.scipy.ndimage = _LazyNamespace(f"{FRONT}.cupyx.scipy.ndimage", _load_ndimage,
                                         "cupyx.scipy.ndimage")
    _sys.modules[cupyx.__name__] = cupyx
    return cupyx
