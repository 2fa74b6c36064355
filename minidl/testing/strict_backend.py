"""The strict test backend as a :class:`minidl.backend.Backend` (registered under "strict" by
``minidl/__init__.py``, so that the backend module depends on nothing above it)."""
from __future__ import annotations

from minidl import backend as B


def load() -> B.Backend:
    """The strict CuPy stand-in (:mod:`minidl.testing.strict`) as a backend."""
    from minidl.testing import strict

    return B.Backend("strict", strict, "strict", strict.ndarray, strict.asarray, strict.asnumpy,
                     lambda: strict.cupyx.scipy.ndimage, strict.cupyx.errstate)
