"""Saving and loading state dicts as ``.npz`` files, without pickle.

The file holds one array per state_dict key (dotted names such as ``conv1.W``) plus a small
``__minidl__`` entry with the format version.  Loading uses ``allow_pickle=False``, so a file can
never execute code; arrays come back on the host and ``Module.load_state_dict`` moves them to
the module's device (saving a GPU model copies to the host and leaves the model on the GPU).
"""
from __future__ import annotations

import os
import pathlib
import tempfile
import zipfile
from collections import OrderedDict

import numpy

from minidl import backend as B

__all__ = ["save_state", "load_state", "FORMAT_VERSION"]

FORMAT_VERSION = 1
_META = "__minidl__"


def save_state(path, state) -> None:
    """Write ``state`` (name -> array on any device) to ``path`` atomically."""
    path = pathlib.Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"save_state: path must end in .npz, got {str(path)!r}")
    arrays = OrderedDict()
    for k, v in state.items():
        if not isinstance(k, str) or k == _META:
            raise ValueError(f"save_state: keys must be str and not {_META!r}, got {k!r}")
        host = B.to_host(v)
        if not isinstance(host, numpy.ndarray) or host.dtype == object:
            raise TypeError(f"save_state: {k!r} must be a numeric array, got "
                            f"{type(v).__name__}")
        arrays[k] = host
    arrays[_META] = numpy.array([FORMAT_VERSION], dtype=numpy.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp.npz", dir=path.parent)
    os.close(fd)
    try:
        numpy.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_state(path) -> "OrderedDict[str, numpy.ndarray]":
    """Read a state dict written by :func:`save_state` (host arrays, file order)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_state: no such file: {str(path)!r}")
    if not zipfile.is_zipfile(path):  # else numpy.load guesses "pickled data": misleading
        raise ValueError(f"load_state: {str(path)!r} is not a readable .npz state file "
                         "(not a zip archive)")
    try:
        with numpy.load(path, allow_pickle=False) as data:
            state = OrderedDict((k, data[k]) for k in data.files)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise ValueError(f"load_state: {str(path)!r} is not a readable .npz state file "
                         f"({type(exc).__name__}: {exc})") from exc
    meta = state.pop(_META, None)
    if meta is not None and int(meta[0]) > FORMAT_VERSION:
        raise ValueError(f"load_state: {str(path)!r} has format version {int(meta[0])}, "
                         f"newer than this minidl ({FORMAT_VERSION})")
    return state
