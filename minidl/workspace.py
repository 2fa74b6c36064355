"""Reusable host scratch arrays.

On the CPU, an array of several MB that is allocated and freed on every call is fresh memory
from the OS each time: the kernel zeroes every page on its first touch, and those page faults
can cost as much as the work that fills the array (4x slower for the 1->32 conv of the MNIST
CNN; 34 -> 10 ms for a 1080p SIFT run's upsampling temporaries).  A :class:`Workspace` keeps such arrays
between calls, by (size, dtype), and hands them out again as flat buffers or reshaped.

Only NumPy arrays are kept; CuPy has its own memory pool, and :meth:`Workspace.take` on any
other backend just allocates.  A buffer is owned by whoever took it until it is given back,
so two users never share one.
"""
from __future__ import annotations

import threading

import numpy

from . import backend as B

__all__ = ["Workspace"]


class Workspace:
    """Spare arrays by (size, dtype), at most ``per_size`` of each.

    ``take(xp, shape, dtype)`` returns an uninitialised array (a spare when one fits, else a new
    one); ``give(*arrays)`` returns arrays for reuse (``None`` and non-NumPy arrays are
    ignored).  Thread-safe.  With ``track=True`` every NumPy array taken is also kept in
    :attr:`taken` (a dict address -> array, each buffer once), so a caller can hand the lot to the
    next call (see :class:`minifeat.SIFT`'s ``keep_buffers``).
    """

    def __init__(self, per_size: int = 2, track: bool = False):
        if not isinstance(per_size, int) or per_size < 0:
            raise ValueError(f"`per_size` must be a non-negative int, got {per_size!r}")
        self.per_size = per_size
        self.free: dict = {}
        self.taken: dict | None = {} if track else None  # data address -> array
        self.lock = threading.Lock()

    def take(self, xp, shape, dtype):
        """An uninitialised array of ``shape`` (int or tuple) and ``dtype`` on ``xp``."""
        shape = (int(shape),) if not isinstance(shape, tuple) else tuple(int(n) for n in shape)
        size = 1
        for n in shape:
            size *= n
        key = (xp.__name__, size, numpy.dtype(dtype))
        buf = None
        with self.lock:
            spare = self.free.get(key)
            if spare:
                buf = spare.pop()
        if buf is None:
            buf = xp.empty(size, dtype=dtype)
        if self.taken is not None and B.backend_of(buf).name == "numpy":
            with self.lock:
                self.taken[_address(buf)] = buf
        return buf if buf.shape == shape else buf.reshape(shape)

    def give(self, *arrays) -> None:
        """Return arrays taken from :meth:`take` (or any contiguous NumPy arrays)."""
        for a in arrays:
            if a is None or B.backend_of(a).name != "numpy" or not a.flags.c_contiguous:
                continue
            flat = a if a.ndim == 1 else a.reshape(-1)
            with self.lock:
                spare = self.free.setdefault(("numpy", flat.size, flat.dtype), [])
                if (len(spare) < self.per_size
                        and all(_address(b) != _address(flat) for b in spare)):
                    spare.append(flat)

    def clear(self) -> None:
        """Drop every spare (and what :attr:`taken` records)."""
        with self.lock:
            self.free.clear()
            if self.taken is not None:
                self.taken.clear()


def _address(a) -> int:
    """Start of a NumPy array's data: the identity of a buffer, whatever view of it is held."""
    return a.__array_interface__["data"][0]
