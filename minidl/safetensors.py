"""The safetensors file format, read and written by hand (no pickle, no dependency).

Layout (https://github.com/huggingface/safetensors, "Format")::

    8 bytes      N, the header length, unsigned little-endian 64-bit
    N bytes      a UTF-8 JSON object  {name: {"dtype": "F32", "shape": [..],
                                               "data_offsets": [begin, end]}, ...,
                                       "__metadata__": {str: str}   (optional)}
                 (writers pad it with spaces to a multiple of 8 bytes)
    the rest     the byte buffer: each tensor's raw little-endian C-order data at
                 [begin, end) relative to the buffer start

The reader trusts nothing: the header length must fit the file, the JSON must be an object
of well-formed entries with a known dtype, ``end - begin`` must equal the shape's byte size,
and the entries must tile the buffer exactly (no overlap, no hole, no trailing bytes), as the
format requires.  Every violation is a :class:`SafetensorsError` (a ``ValueError``) that says
what is wrong.  BF16 tensors are widened to float32 on reading (NumPy has no bfloat16).
"""
from __future__ import annotations

import json
import os
import pathlib
import struct
import tempfile
from collections import OrderedDict

import numpy

from minidl import backend as B

__all__ = ["SafetensorsError", "save_file", "load_file", "save_bytes", "load_bytes",
           "parse_header", "read_metadata"]

MAX_HEADER_BYTES = 100 * 1024 * 1024   # the reference implementation's limit

_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4",
           "I16": "<i2", "I8": "i1", "U64": "<u8", "U32": "<u4", "U16": "<u2", "U8": "u1",
           "BOOL": "?", "BF16": "<u2"}
_NAMES = {numpy.dtype(v).newbyteorder("<") if v not in ("?", "i1", "u1") else numpy.dtype(v): k
          for k, v in _DTYPES.items() if k != "BF16"}


class SafetensorsError(ValueError):
    """A safetensors file or header that breaks the format."""


# ----------------------------------------------------------------------------------- writing

def save_bytes(state, metadata=None) -> bytes:
    """``state`` (name -> array on any device) as safetensors bytes."""
    header, chunks, offset = OrderedDict(), [], 0
    if metadata is not None:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError("safetensors: metadata must map str to str")
        header["__metadata__"] = dict(metadata)
    for name, value in state.items():
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise ValueError(f"safetensors: tensor names must be non-empty str other than "
                             f"'__metadata__', got {name!r}")
        a = numpy.asarray(B.to_host(value))
        a = a if a.flags.c_contiguous else a.copy(order="C")  # ascontiguousarray makes 0-d 1-d
        key = a.dtype if a.dtype.itemsize == 1 else a.dtype.newbyteorder("<")
        if key not in _NAMES:
            raise TypeError(f"safetensors: {name!r} has dtype {a.dtype}, which the format "
                            f"cannot store")
        raw = a.astype(key, copy=False).tobytes()
        header[name] = {"dtype": _NAMES[key], "shape": list(a.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + b"".join(chunks)


def save_file(state, path, metadata=None) -> None:
    """Write ``state`` to ``path`` (atomically: a temporary file then a rename)."""
    path = pathlib.Path(path)
    data = save_bytes(state, metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# ----------------------------------------------------------------------------------- reading

def _fail(where, msg):
    raise SafetensorsError(f"{where}: {msg}")


def parse_header(data: bytes, where: str = "safetensors"):
    """Validate the header of ``data`` (the whole file) and return
    ``(entries, metadata, buffer_start)``, entries as {name: (dtype, shape, begin, end)}."""
    if len(data) < 8:
        _fail(where, f"file too short for the 8-byte header length ({len(data)} bytes)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER_BYTES:
        _fail(where, f"header length {n} exceeds the {MAX_HEADER_BYTES}-byte limit")
    if 8 + n > len(data):
        _fail(where, f"header length {n} runs past the end of the file ({len(data)} bytes): "
                     "truncated or not a safetensors file")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        _fail(where, f"header is not valid UTF-8 JSON ({exc})")
    except RecursionError:
        _fail(where, "header JSON is nested too deeply")
    if not isinstance(header, dict):
        _fail(where, f"header must be a JSON object, got {type(header).__name__}")
    metadata = header.pop("__metadata__", None)
    if metadata is not None and not (isinstance(metadata, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())):
        _fail(where, "__metadata__ must be an object of strings")
    size = len(data) - 8 - n
    entries = OrderedDict()
    for name, e in header.items():
        tag = f"tensor {name!r}"
        if not isinstance(e, dict) or set(e) != {"dtype", "shape", "data_offsets"}:
            _fail(where, f"{tag}: entry must be an object with exactly dtype, shape and "
                         f"data_offsets, got {e!r:.120}")
        dtype, shape, offs = e["dtype"], e["shape"], e["data_offsets"]
        if dtype not in _DTYPES:
            _fail(where, f"{tag}: unknown dtype {dtype!r} (expected one of "
                         f"{', '.join(_DTYPES)})")
        if not isinstance(shape, list) or not all(
                type(d) is int and d >= 0 for d in shape):
            _fail(where, f"{tag}: shape must be a list of non-negative ints, got {shape!r}")
        if not (isinstance(offs, list) and len(offs) == 2
                and all(type(o) is int for o in offs) and 0 <= offs[0] <= offs[1]):
            _fail(where, f"{tag}: data_offsets must be [begin, end] with 0 <= begin <= end, "
                         f"got {offs!r}")
        nbytes = int(numpy.prod(shape, dtype=object)) * numpy.dtype(_DTYPES[dtype]).itemsize
        if offs[1] - offs[0] != nbytes:
            _fail(where, f"{tag}: data_offsets {offs} hold {offs[1] - offs[0]} bytes but "
                         f"{dtype} {shape} needs {nbytes}")
        if offs[1] > size:
            _fail(where, f"{tag}: data ends at byte {offs[1]} but the buffer has only {size} "
                         "bytes: truncated file")
        entries[name] = (dtype, tuple(shape), offs[0], offs[1])
    pos = 0
    for name, (_, _, begin, end) in sorted(entries.items(), key=lambda kv: kv[1][2:]):
        if begin != pos:
            _fail(where, f"tensor {name!r} starts at byte {begin}, expected {pos}: the data "
                         "overlaps or leaves a hole")
        pos = end
    if pos != size:
        _fail(where, f"{size - pos} bytes after the last tensor: the buffer must be exactly "
                     "covered")
    return entries, metadata, 8 + n


def load_bytes(data: bytes, where: str = "safetensors") -> "OrderedDict[str, numpy.ndarray]":
    """Host arrays from safetensors ``data`` (header order)."""
    entries, _, start = parse_header(data, where)
    out = OrderedDict()
    for name, (dtype, shape, begin, end) in entries.items():
        a = numpy.frombuffer(data, dtype=_DTYPES[dtype], count=(end - begin) //
                             numpy.dtype(_DTYPES[dtype]).itemsize, offset=start + begin)
        if dtype == "BF16":
            a = (a.astype(numpy.uint32) << 16).view(numpy.float32)
        out[name] = a.astype(a.dtype.newbyteorder("="), copy=True).reshape(shape)
    return out


def load_file(path) -> "OrderedDict[str, numpy.ndarray]":
    """Read every tensor of the safetensors file ``path`` as host arrays."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"safetensors: no such file: {str(path)!r}")
    return load_bytes(path.read_bytes(), where=f"safetensors file {str(path)!r}")


def read_metadata(path) -> dict | None:
    """The ``__metadata__`` of a safetensors file (None when absent)."""
    return parse_header(pathlib.Path(path).read_bytes())[1]
