"""The strict ``ufunc``: a CuPy-like universal function over strict arrays, with ``.at`` /
``.reduce`` / ``.accumulate`` / ``.reduceat`` only where CuPy's has them (the manifest says which);
NumPy's ufunc does the work.  Refuses host arrays and lists, as CuPy's ufuncs do.
"""
from __future__ import annotations

import numpy as _np

from minidl.testing import _strict_manifest as _m
from minidl.testing._strict_array import _unwrap, _unwrap_key, _wrap, ndarray
from minidl.testing._strict_core import _SCALARS, _SEQ, _TAG, _Checker, _host_error, _public


@_public
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
