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

The pickle is interpreted by :class:`_Machine`, a small pickle virtual machine written here:
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
from collections import OrderedDict

import numpy

__all__ = ["TorchFileError", "load", "load_bytes", "ALLOWED_GLOBALS"]

_STORAGES = {"FloatStorage": "f4", "DoubleStorage": "f8", "HalfStorage": "f2",
             "BFloat16Storage": "bf16", "LongStorage": "i8", "IntStorage": "i4",
             "ShortStorage": "i2", "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?"}
_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
MAX_PICKLE_BYTES = 1 << 30      # a state_dict's pickle is kilobytes; refuse a zip bomb
MAX_DEPTH = 64                  # containers nested deeper than a checkpoint ever is


class TorchFileError(ValueError):
    """A ``.pth`` file that is malformed, truncated, or asks for code to run."""


class _Storage:
    """A persistent-id storage: its dtype (a NumPy code, or 'bf16'), key and element count;
    ``array`` is filled in from the zip entry or the legacy stream."""

    def __init__(self, code, key, numel):
        self.code, self.key, self.numel, self.array = code, key, numel, None


class _Tensor:
    """A tensor waiting for its storage's bytes: torch's (storage, offset, size, stride)."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


def _ints(value, what):
    if not isinstance(value, tuple) or not all(type(v) is int and v >= 0 for v in value):
        raise TorchFileError(f"tensor {what} must be a tuple of non-negative ints, got "
                             f"{value!r}")
    return value


def _rebuild_tensor(storage, offset, size, stride, *unused):
    if not isinstance(storage, _Storage):
        raise TorchFileError(f"a tensor's storage must be a persistent storage id, got "
                             f"{type(storage).__name__}")
    if type(offset) is not int or offset < 0:
        raise TorchFileError(f"tensor storage offset must be a non-negative int, got {offset!r}")
    size, stride = _ints(size, "size"), _ints(stride, "stride")
    if len(size) != len(stride):
        raise TorchFileError(f"tensor size {size} and stride {stride} differ in length")
    count = 1
    for s in size:
        count *= s
    if count:
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= storage.numel:
            raise TorchFileError(f"tensor (offset {offset}, size {size}, stride {stride}) "
                                 f"reaches element {last} of storage {storage.key!r}, which "
                                 f"has {storage.numel}")
        if count > max(storage.numel, 1 << 24):
            raise TorchFileError(f"tensor of size {size} is implausibly large for storage "
                                 f"{storage.key!r} of {storage.numel} elements")
    return _Tensor(storage, offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, hooks=None, *unused):
    if not isinstance(data, _Tensor):
        raise TorchFileError(f"a parameter must wrap a tensor, got {type(data).__name__}")
    return data


def _ordered_dict(*args):
    if args and not (len(args) == 1 and isinstance(args[0], list)):
        raise TorchFileError("collections.OrderedDict takes no argument or a list of pairs")
    try:
        return OrderedDict(*args)
    except (TypeError, ValueError) as exc:
        raise TorchFileError(f"bad OrderedDict items: {exc}") from None


class _Callable:
    def __init__(self, name, fn):
        self.name, self.fn = name, fn


ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    **{("torch", name): code for name, code in _STORAGES.items()},
}


class _Machine:
    """The pickle opcodes a state_dict uses, interpreted over ``data`` from ``pos``."""

    def __init__(self, data, pos=0):
        self.data, self.pos = data, pos
        self.stack, self.marks, self.memo, self.storages = [], [], {}, {}

    def take(self, n):
        if n < 0 or self.pos + n > len(self.data):
            raise TorchFileError(f"pickle truncated: needs {n} byte(s) at byte {self.pos}")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def unpack(self, fmt):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def line(self):
        end = self.data.find(b"\n", self.pos, self.pos + 256)
        if end < 0:
            raise TorchFileError(f"unterminated GLOBAL name at byte {self.pos}")
        text = self.data[self.pos:end]
        self.pos = end + 1
        return text.decode("ascii", "replace")

    def pop(self):
        if not self.stack or (self.marks and len(self.stack) <= self.marks[-1]):
            raise TorchFileError(f"pickle stack underflow at byte {self.pos}")
        return self.stack.pop()

    def pop_mark(self):
        if not self.marks:
            raise TorchFileError(f"pickle has no MARK to pop at byte {self.pos}")
        start = self.marks.pop()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    def top(self, kind):
        if not self.stack or not isinstance(self.stack[-1], kind):
            raise TorchFileError(f"pickle expects a {kind.__name__} on the stack at byte "
                                 f"{self.pos}")
        return self.stack[-1]

    def resolve(self, module, name):
        target = ALLOWED_GLOBALS.get((module, name))
        if target is None:
            raise TorchFileError(
                f"refused global {module}.{name}: only the names a PyTorch state_dict needs "
                f"are allowed (collections.OrderedDict, torch._utils._rebuild_tensor_v2, "
                f"torch._utils._rebuild_parameter, torch.*Storage); nothing was run")
        return target if isinstance(target, str) else _Callable(f"{module}.{name}", target)

    def persistent(self, pid):
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"
                and pid[1] in _STORAGES.values() and isinstance(pid[2], str)
                and type(pid[4]) is int and pid[4] >= 0):
            raise TorchFileError(f"unexpected persistent id {pid!r:.200}")
        code, key, numel = pid[1], pid[2], pid[4]
        if len(pid) == 6 and pid[5] is not None:
            raise TorchFileError("legacy storage views are not supported")
        known = self.storages.get(key)
        if known is None:
            known = self.storages[key] = _Storage(code, key, numel)
        elif (known.code, known.numel) != (code, numel):
            raise TorchFileError(f"storage {key!r} is declared twice with different types "
                                 "or sizes")
        return known

    def run(self):
        """Interpret up to STOP; returns the pickled object (tensors as :class:`_Tensor`)."""
        while True:
            op = self.take(1)
            handler = _OPS.get(op)
            if handler is None:
                raise TorchFileError(f"refused pickle opcode {op!r} at byte {self.pos - 1} "
                                     "(not one a state_dict uses)")
            if handler(self) is _STOP:
                if len(self.stack) != 1 or self.marks:
                    raise TorchFileError("pickle ends with a malformed stack")
                return self.stack.pop()


_STOP = object()


def _setitems(m, items):
    target = m.top(dict)
    if len(items) % 2:
        raise TorchFileError(f"SETITEMS with an odd number of items at byte {m.pos}")
    try:
        for k, v in zip(items[::2], items[1::2]):
            target[k] = v
    except TypeError:
        raise TorchFileError(f"unhashable dict key at byte {m.pos}") from None


def _additems(m, items, frozen=False):
    try:
        if frozen:
            m.stack.append(frozenset(items))
        else:
            m.top(set).update(items)
    except TypeError:
        raise TorchFileError(f"unhashable set item at byte {m.pos}") from None


def _reduce(m):
    args, fn = m.pop(), m.pop()
    if not isinstance(fn, _Callable) or not isinstance(args, tuple):
        raise TorchFileError(f"REDUCE of a non-callable {type(fn).__name__} at byte {m.pos}")
    try:
        m.stack.append(fn.fn(*args))
    except TypeError as exc:
        raise TorchFileError(f"{fn.name} called with bad arguments: {exc}") from None


def _build(m):
    state, target = m.pop(), m.top(object)
    # An OrderedDict state_dict carries its ``_metadata`` (per-module versions) as instance
    # state: ignored, as it only matters to torch's load_state_dict hooks.
    if not (isinstance(target, dict) and isinstance(state, dict)):
        raise TorchFileError(f"BUILD of a {type(target).__name__} at byte {m.pos} (only a "
                             "dict's attributes are accepted, and ignored)")


def _memo_get(m, key):
    if key not in m.memo:
        raise TorchFileError(f"memo key {key} read before it was written (byte {m.pos})")
    m.stack.append(m.memo[key])


def _memo_put(m, key):
    if not m.stack:
        raise TorchFileError(f"memo write from an empty stack at byte {m.pos}")
    m.memo[key] = m.stack[-1]


def _text(m, n):
    try:
        return m.take(n).decode("utf-8")
    except UnicodeDecodeError:
        raise TorchFileError(f"invalid UTF-8 string before byte {m.pos}") from None


def _long(m, n):
    if n > 64:
        raise TorchFileError(f"{n}-byte integer at byte {m.pos}")
    return int.from_bytes(m.take(n), "little", signed=True)


def _stack_global(m):
    name, module = m.pop(), m.pop()
    if not (isinstance(name, str) and isinstance(module, str)):
        raise TorchFileError(f"STACK_GLOBAL needs two strings at byte {m.pos}")
    m.stack.append(m.resolve(module, name))


def _append(m, items):
    m.top(list).extend(items)


def _tuple(m, n):
    items = [m.pop() for _ in range(n)][::-1]
    m.stack.append(tuple(items))


_OPS = {
    b"\x80": lambda m: m.take(1),                                     # PROTO
    b"\x95": lambda m: m.take(8),                                     # FRAME
    b".": lambda m: _STOP,                                            # STOP
    b"(": lambda m: m.marks.append(len(m.stack)),                     # MARK
    b"0": lambda m: m.pop(),                                          # POP
    b"1": lambda m: m.pop_mark(),                                     # POP_MARK
    b"2": lambda m: m.stack.append(m.top(object)),                    # DUP
    b"N": lambda m: m.stack.append(None),
    b"\x88": lambda m: m.stack.append(True),
    b"\x89": lambda m: m.stack.append(False),
    b"J": lambda m: m.stack.append(m.unpack("<i")),                   # BININT
    b"K": lambda m: m.stack.append(m.unpack("<B")),                   # BININT1
    b"M": lambda m: m.stack.append(m.unpack("<H")),                   # BININT2
    b"\x8a": lambda m: m.stack.append(_long(m, m.unpack("<B"))),      # LONG1
    b"\x8b": lambda m: m.stack.append(_long(m, m.unpack("<i"))),      # LONG4
    b"G": lambda m: m.stack.append(m.unpack(">d")),                   # BINFLOAT
    b"X": lambda m: m.stack.append(_text(m, m.unpack("<I"))),         # BINUNICODE
    b"\x8c": lambda m: m.stack.append(_text(m, m.unpack("<B"))),      # SHORT_BINUNICODE
    b"\x8d": lambda m: m.stack.append(_text(m, m.unpack("<Q"))),      # BINUNICODE8
    b"B": lambda m: m.stack.append(m.take(m.unpack("<I"))),           # BINBYTES
    b"C": lambda m: m.stack.append(m.take(m.unpack("<B"))),           # SHORT_BINBYTES
    b"}": lambda m: m.stack.append({}),
    b"]": lambda m: m.stack.append([]),
    b")": lambda m: m.stack.append(()),
    b"\x8f": lambda m: m.stack.append(set()),                         # EMPTY_SET
    b"t": lambda m: m.stack.append(tuple(m.pop_mark())),
    b"\x85": lambda m: _tuple(m, 1),
    b"\x86": lambda m: _tuple(m, 2),
    b"\x87": lambda m: _tuple(m, 3),
    b"l": lambda m: m.stack.append(m.pop_mark()),                     # LIST
    b"a": lambda m: _append(m, [m.pop()]),                            # APPEND
    b"e": lambda m: _append(m, m.pop_mark()),                         # APPENDS
    b"s": lambda m: _setitems(m, [*reversed([m.pop(), m.pop()])]),    # SETITEM
    b"u": lambda m: _setitems(m, m.pop_mark()),                       # SETITEMS
    b"\x90": lambda m: _additems(m, m.pop_mark()),                    # ADDITEMS
    b"\x91": lambda m: _additems(m, m.pop_mark(), frozen=True),       # FROZENSET
    b"q": lambda m: _memo_put(m, m.unpack("<B")),                     # BINPUT
    b"r": lambda m: _memo_put(m, m.unpack("<I")),                     # LONG_BINPUT
    b"\x94": lambda m: _memo_put(m, len(m.memo)),                     # MEMOIZE
    b"h": lambda m: _memo_get(m, m.unpack("<B")),                     # BINGET
    b"j": lambda m: _memo_get(m, m.unpack("<I")),                     # LONG_BINGET
    b"c": lambda m: m.stack.append(m.resolve(m.line(), m.line())),    # GLOBAL
    b"\x93": _stack_global,
    b"R": _reduce,
    b"Q": lambda m: m.stack.append(m.persistent(m.pop())),            # BINPERSID
    b"b": _build,
}


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
    if isinstance(obj, _Tensor):
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
        machine = _Machine(archive.read(pkl[0]))
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
        m = _Machine(data, pos)
        header.append(m.run())
        pos = m.pos
    if header[0] != _LEGACY_MAGIC or header[1] != 1001 or not isinstance(header[2], dict):
        raise TorchFileError("neither a zip archive nor a legacy torch.save stream (bad magic "
                             "number)")
    big = not header[2].get("little_endian", True)
    m = _Machine(data, pos)
    obj = m.run()
    keys_m = _Machine(data, m.pos)
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
