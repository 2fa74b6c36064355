"""What every part of the strict backend (:mod:`minidl.testing.strict`) shares: its name, its
messages, CuPy signature checks and the namespace registry.  Imports no other part, so that
every part can import it without a cycle.
"""
from __future__ import annotations

import builtins as _b
import math as _math

import numpy as _np

from minidl.testing import _strict_manifest as _m

FRONT = "minidl.testing.strict"  # the emulated ``cupy``; sub-namespaces are named below it
_VERSION = _m.cupy_version()
_TAG = f"minidl strict backend, emulating CuPy {_VERSION}"
_SCALARS = (bool, int, float, complex, _np.generic)
_SEQ = (list, tuple)
_BAD_KINDS = frozenset("OUSVMm")  # CuPy 14 has numeric and bool dtypes only

# the ``cupy`` namespace, ``{name: twin}``: filled by the front; ``ndarray``'s operators and
# methods look their ufuncs up here at call time
_NS: dict = {}


def _public(obj):
    """Give ``obj`` the front's name as its home, so reprs and pickles name
    ``minidl.testing.strict.X`` (the public path), not the private module it is defined in."""
    obj.__module__ = FRONT
    return obj


def _host_error(where):
    return TypeError(
        f"{where}: got a host numpy.ndarray where a device array is needed. CuPy does not mix "
        "host and device arrays implicitly; move it with xp.asarray(...) first "
        f"({_TAG}).")


def _missing(qualname):
    return AttributeError(f"{qualname} does not exist in CuPy {_VERSION} ({_TAG})")


def _not_emulated(qualname):
    return AttributeError(f"{qualname} exists in CuPy {_VERSION} but is not emulated by the "
                          f"{_TAG.split(',')[0]} (no NumPy equivalent)")


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


def _checked(qualname, sig_text, impl):
    """``impl`` behind CuPy's signature check (for hand-written twins)."""
    checker = _Checker(qualname, sig_text)

    def f(*args, **kwargs):
        checker.check(args, kwargs)
        return impl(*args, **kwargs)
    f.__name__ = impl.__name__
    f.__doc__ = impl.__doc__
    return f
