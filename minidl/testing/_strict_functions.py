"""Hand-written twins, where CuPy behaves otherwise than NumPy in ways that break ported code:
``get_array_module``, ``copyto`` (refuses non-scalar host sources), ``sort`` / ``argsort``
(``kind`` None or "stable"), ``histogram`` (no string ``bins``), ``pad`` (CuPy's modes and
keywords only), and ``lib.stride_tricks``' ``as_strided`` (refuses a view outside its array's
memory) and ``sliding_window_view`` (no writeable views).  :data:`_CUSTOM` is what
:func:`~minidl.testing._strict_namespace._build` takes instead of NumPy's functions.
"""
from __future__ import annotations

import sys as _sys

import numpy as _np

from minidl.testing._strict_array import _sort_kind, _unwrap, _wrap, array, asarray, asnumpy
from minidl.testing._strict_core import FRONT, _TAG, _public


@_public
def get_array_module(*args):
    return _sys.modules[FRONT]


@_public
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


_CUSTOM = {"asarray": asarray, "array": array, "asnumpy": asnumpy, "copyto": copyto,
           "get_array_module": get_array_module, "sort": _sort_func("sort"),
           "argsort": _sort_func("argsort"), "histogram": _histogram, "pad": _pad}
