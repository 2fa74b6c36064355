"""``torch.save``'s zip layout written by hand, opcode by opcode (protocol 2, as torch writes
it), so the reader's tests can build exact files -- shared storages, offsets, strides,
big-endian archives, hostile pickles -- with or without PyTorch installed."""
import io
import struct
import zipfile


def _int(v):
    return b"J" + struct.pack("<i", v)


def _str(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def _tuple(values):
    return b"(" + b"".join(_int(v) for v in values) + b"t"


def tensor_pickle(storage_type, key, numel, offset, size, stride):
    """The opcodes torch writes for one tensor: _rebuild_tensor_v2(persistent storage, offset,
    size, stride, requires_grad=False, OrderedDict())."""
    return (b"ctorch._utils\n_rebuild_tensor_v2\n("
            + b"(" + _str("storage") + f"ctorch\n{storage_type}\n".encode() + _str(key)
            + _str("cpu") + _int(numel) + b"tQ"
            + _int(offset) + _tuple(size) + _tuple(stride) + b"\x89"
            + b"ccollections\nOrderedDict\n)R" + b"tR")


def state_pickle(tensors, metadata=True):
    """An OrderedDict state_dict: ``tensors`` maps name -> tensor_pickle(...) bytes; with
    ``metadata`` the ``_metadata`` attribute torch's state_dict carries (set by BUILD)."""
    body = b"\x80\x02ccollections\nOrderedDict\nq\x00)R(" + b"".join(
        _str(name) + t for name, t in tensors.items()) + b"u"
    if metadata:
        body += b"}" + _str("_metadata") + b"h\x00)R" + _str("") + b"}" + _str("version") \
            + _int(1) + b"sssb"
    return body + b"."


def pth_zip(pkl, storages, name="archive", byteorder="little", extra=None):
    """A torch.save zip: <name>/data.pkl, <name>/data/<key> (stored, not compressed),
    <name>/byteorder, <name>/version."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{name}/data.pkl", pkl)
        if byteorder is not None:
            z.writestr(f"{name}/byteorder", byteorder)
        for key, raw in storages.items():
            z.writestr(f"{name}/data/{key}", raw)
        z.writestr(f"{name}/version", "3\n")
        for entry, raw in (extra or {}).items():
            z.writestr(f"{name}/{entry}", raw)
    return buf.getvalue()
