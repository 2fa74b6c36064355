"""PyTorch checkpoints (``torch.save``) read by hand: no PyTorch, and no pickled code run.

A ``.pth`` written by ``torch.save`` (PyTorch >= 1.6) is a zip archive::

    <name>/data.pkl        a pickle (protocol 2) of the saved object: dicts, tuples, str, int,
                           float, and tensors, each pickled as
                           torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)
                           with ``storage`` a persistent id
                           ('storage', torch.FloatStorage, '<key>', 'cpu', numel)
    <name>/data/<key>      each storage's raw bytes, numel * itemsize, little-endian
    <name>/byteorder       'little' or 'big' (absent in older files: little)
    <name>/version, ...    bookkeeping, unused here

The legacy format (PyTorch < 1.6, or ``_use_new_zipfile_serialization=False``) is a stream of
pickles (magic number, protocol, system info, the object, the storage keys) followed by each
storage as an int64 element count and its raw bytes; it is read too.

The pickle is interpreted by :class:`Machine`, a small pickle virtual machine written here:
it knows the data opcodes (containers, numbers, strings, memo), and resolves globals against
an allow-list of the names a state_dict needs (``collections.OrderedDict``, the tensor and
parameter rebuilders, the storage types), each mapped to a function of this module.  Any other
global (``os.system``, ``builtins.eval``, a model class), any object-building opcode (INST,
OBJ, NEWOBJ, EXT*) and any malformed byte is a :class:`TorchFileError` naming the file, and
nothing is imported or executed.  Tensors come back as NumPy arrays (bfloat16 widened to
float32 by a bit shift); two tensors viewing one storage are two arrays copied from it.
"""
from __future__ import annotations

import io
import pathlib
import struct
import zipfile
import zlib

import numpy

from minidl.torchfile.allowed import ALLOWED_GLOBALS, PendingTensor, TorchFileError
from minidl.torchfile.machine import Machine

__all__ = ["TorchFileError", "load", "load_bytes", "ALLOWED_GLOBALS"]

_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
MAX_PICKLE_BYTES = 1 << 30      # a state_dict's pickle is kilobytes; refuse a zip bomb
MAX_DEPTH = 64                  # containers nested deeper than a checkpoint ever is


# ------------------------------------------------------------------- storages -> arrays

def _storage_array(raw, code, numel, big_endian, key):
    """The raw bytes of one storage as a 1-D host array (bfloat16 -> float32)."""
    dtype = numpy.dtype("u2" if code == "bf16" else code)
    if len(raw) != numel * dtype.itemsize:
        raise TorchFileError(f"storage {key!r} holds {len(raw)} bytes, expected {numel} x "
                             f"{dtype.itemsize}")
    arr = numpy.frombuffer(raw, dtype.newbyteorder(">" if big_endian else "<"))
    if code == "bf16":   # bfloat16 is the top half of a float32
        return (arr.astype(numpy.uint32) << 16).view(numpy.float32)
    return arr.astype(dtype.newbyteorder("="), copy=False)


def _materialise(obj, depth=0, done=None):
    """Replace every pending tensor in ``obj`` by its array (a copy out of its storage); each
    object once (``done``), so a pickle of shared sub-objects cannot blow up the walk."""
    done = {} if done is None else done
    if id(obj) in done:
        return done[id(obj)][1]
    if depth > MAX_DEPTH:
        raise TorchFileError(f"containers nested more than {MAX_DEPTH} deep")
    new = _materialise_one(obj, depth, done)
    done[id(obj)] = (obj, new)     # the original kept alive: its id cannot be reused
    return new


def _materialise_one(obj, depth, done):
    if isinstance(obj, PendingTensor):
        base, item = obj.storage.array, obj.storage.array.itemsize
        view = numpy.lib.stride_tricks.as_strided(
            base[obj.offset:], obj.size, [s * item for s in obj.stride], writeable=False)
        return numpy.array(view, order="C")
    if isinstance(obj, dict):
        for k in obj:
            obj[k] = _materialise(obj[k], depth + 1, done)
    elif isinstance(obj, list):
        obj[:] = [_materialise(v, depth + 1, done) for v in obj]
    elif isinstance(obj, tuple):
        return tuple(_materialise(v, depth + 1, done) for v in obj)
    return obj


def _load_zip(data):
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        names = archive.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise TorchFileError("not a torch.save archive: expected one <name>/data.pkl, "
                                 f"found {len(pkl)}")
        prefix = pkl[0][:-len("data.pkl")]
        if archive.getinfo(pkl[0]).file_size > MAX_PICKLE_BYTES:
            raise TorchFileError("data.pkl is implausibly large")
        machine = Machine(archive.read(pkl[0]))
        obj = machine.run()
        big = (archive.read(prefix + "byteorder").strip() == b"big"
               if prefix + "byteorder" in names else False)
        for key, st in machine.storages.items():
            entry = f"{prefix}data/{key}"
            if entry not in names:
                raise TorchFileError(f"storage {key!r} is missing ({entry})")
            info = archive.getinfo(entry)
            width = 2 if st.code == "bf16" else numpy.dtype(st.code).itemsize
            if info.file_size != st.numel * width:
                raise TorchFileError(f"storage {key!r} holds {info.file_size} bytes, expected "
                                     f"{st.numel} x {width}")
            st.array = _storage_array(archive.read(entry), st.code, st.numel, big, key)
        return obj
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, OverflowError,
            struct.error, UnicodeDecodeError, KeyError, ValueError) as exc:
        if isinstance(exc, TorchFileError):
            raise
        raise TorchFileError(f"corrupted or truncated zip archive ({type(exc).__name__}: "
                             f"{exc})") from None


def _load_legacy(data):
    """PyTorch < 1.6: five pickles, then each storage as <int64 numel><bytes>."""
    pos, header = 0, []
    for _ in range(3):   # magic number, protocol version, system info
        m = Machine(data, pos)
        header.append(m.run())
        pos = m.pos
    if header[0] != _LEGACY_MAGIC or header[1] != 1001 or not isinstance(header[2], dict):
        raise TorchFileError("neither a zip archive nor a legacy torch.save stream (bad magic "
                             "number)")
    big = not header[2].get("little_endian", True)
    m = Machine(data, pos)
    obj = m.run()
    keys_m = Machine(data, m.pos)
    keys = keys_m.run()
    pos = keys_m.pos
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise TorchFileError("legacy storage key list is malformed")
    for key in keys:
        st = m.storages.get(key)
        if st is None:
            raise TorchFileError(f"legacy stream holds an undeclared storage {key!r}")
        numel = struct.unpack(">q" if big else "<q", _slice(data, pos, 8, key))[0]
        width = 2 if st.code == "bf16" else numpy.dtype(st.code).itemsize
        if numel != st.numel:
            raise TorchFileError(f"storage {key!r} has {numel} elements, declared {st.numel}")
        st.array = _storage_array(_slice(data, pos + 8, numel * width, key), st.code, numel,
                                  big, key)
        pos += 8 + numel * width
    missing = [k for k, st in m.storages.items() if st.array is None]
    if missing:
        raise TorchFileError(f"storage {missing[0]!r} is missing from the legacy stream")
    return obj


def _slice(data, pos, n, key):
    if n < 0 or pos + n > len(data):
        raise TorchFileError(f"truncated: storage {key!r} runs past the end of the file")
    return data[pos:pos + n]


def load_bytes(data: bytes, where: str = "<bytes>"):
    """The object ``torch.save`` pickled into ``data``, tensors as host NumPy arrays (C
    order, the file's dtype; bfloat16 as float32).  Raises :class:`TorchFileError`, naming
    ``where``, for a malformed file or any global outside :data:`ALLOWED_GLOBALS`."""
    try:
        if data[:4] == b"PK\x03\x04":
            obj = _load_zip(data)
        elif data[:1] == b"\x80":
            obj = _load_legacy(data)
        else:
            raise TorchFileError("not a PyTorch checkpoint (neither a zip archive nor a "
                                 "legacy pickle stream)")
        return _materialise(obj)
    except TorchFileError as exc:
        raise TorchFileError(f"{where}: {exc}") from None
    except RecursionError:
        raise TorchFileError(f"{where}: nested too deeply") from None
    except (TypeError, ValueError, IndexError, KeyError, OverflowError, struct.error) as exc:
        # a malformed file this reader did not foresee: still one error naming the file
        raise TorchFileError(f"{where}: malformed checkpoint ({type(exc).__name__}: "
                             f"{exc})") from None


def load(path):
    """Read the PyTorch checkpoint ``path`` (see :func:`load_bytes`)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"torch checkpoint: no such file: {str(path)!r}")
    return load_bytes(path.read_bytes(), where=f"{str(path)!r}")
