"""A small pickle virtual machine: the data opcodes a state_dict uses (containers, numbers,
strings, memo), globals resolved only against :data:`~minidl.torchfile.allowed.ALLOWED_GLOBALS`,
persistent ids only as storages.  Any other global, any object-building opcode (INST, OBJ,
NEWOBJ, EXT*) and any malformed byte is a :class:`TorchFileError`; nothing is imported or run."""
from __future__ import annotations

import struct

from minidl.torchfile.allowed import (ALLOWED_GLOBALS, STORAGE_CODES, Allowed, Storage,
                                      TorchFileError)

__all__ = ["Machine"]


class Machine:
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
                f"torch._utils.rebuild_parameter, torch.*Storage); nothing was run")
        return target if isinstance(target, str) else Allowed(f"{module}.{name}", target)

    def persistent(self, pid):
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"
                and pid[1] in STORAGE_CODES.values() and isinstance(pid[2], str)
                and type(pid[4]) is int and pid[4] >= 0):
            raise TorchFileError(f"unexpected persistent id {pid!r:.200}")
        code, key, numel = pid[1], pid[2], pid[4]
        if len(pid) == 6 and pid[5] is not None:
            raise TorchFileError("legacy storage views are not supported")
        known = self.storages.get(key)
        if known is None:
            known = self.storages[key] = Storage(code, key, numel)
        elif (known.code, known.numel) != (code, numel):
            raise TorchFileError(f"storage {key!r} is declared twice with different types "
                                 "or sizes")
        return known

    def run(self):
        """Interpret up to STOP; returns the pickled object (tensors as :class:`PendingTensor`)."""
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
    if not isinstance(fn, Allowed) or not isinstance(args, tuple):
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
