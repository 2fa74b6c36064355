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

The parts live in private modules, assembled here: ``_strict_core`` (names, messages, signature
checks, the ``_NS`` registry), ``_strict_array`` (``ndarray`` and the NumPy boundary),
``_strict_ufunc``, ``_strict_namespace`` (twins built from the manifest, sub-namespaces),
``_strict_functions`` (hand-written twins), ``_strict_random`` and ``_strict_cupyx``.
"""
from __future__ import annotations

import sys as _sys
import types as _types

import numpy as _np

from minidl.testing import _strict_manifest as _m
from minidl.testing._strict_array import ndarray
from minidl.testing._strict_core import _NS, _checked, _missing, _not_emulated
from minidl.testing._strict_cupyx import _cupyx
from minidl.testing._strict_functions import _CUSTOM, _as_strided, _sliding_window_view
from minidl.testing._strict_namespace import _HOST_OK, _build, _install_methods, _sub
from minidl.testing._strict_random import _random_members
from minidl.testing._strict_ufunc import ufunc

_install_methods()
_NS.update(_build("cupy", _np, _CUSTOM, _HOST_OK))
_NS["ndarray"] = ndarray
_NS["ufunc"] = ufunc
globals().update(_NS)

linalg = _sub("linalg", "cupy.linalg", _build("cupy.linalg", _np.linalg))
fft = _sub("fft", "cupy.fft", _build("cupy.fft", _np.fft))

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

random = _sub("random", "cupy.random", _random_members())
_NS.update(linalg=linalg, fft=fft, lib=lib, random=random)
cupyx = _cupyx()


# --------------------------------------------------------------------------- module lookup

_CUPY_NAMES = set(_m.namespace("cupy"))


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    if name in _CUPY_NAMES:
        raise _not_emulated(f"cupy.{name}")
    raise _missing(f"cupy.{name}")


def __dir__():
    return sorted(n for n in globals() if not n.startswith("_"))
