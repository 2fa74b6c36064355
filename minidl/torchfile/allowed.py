"""What a PyTorch state_dict's pickle may name, and what each name builds here: the storage
types, the tensor and parameter rebuilders and ``collections.OrderedDict``
(:data:`ALLOWED_GLOBALS`).  Nothing of torch is imported; a tensor is a :class:`PendingTensor`
until its storage's bytes are read (:mod:`minidl.torchfile`)."""
from __future__ import annotations

from collections import OrderedDict

__all__ = ["TorchFileError", "STORAGE_CODES", "Storage", "PendingTensor", "Allowed",
           "ALLOWED_GLOBALS", "rebuild_tensor", "rebuild_parameter", "ordered_dict"]

STORAGE_CODES = {"FloatStorage": "f4", "DoubleStorage": "f8", "HalfStorage": "f2",
             "BFloat16Storage": "bf16", "LongStorage": "i8", "IntStorage": "i4",
             "ShortStorage": "i2", "CharStorage": "i1", "ByteStorage": "u1", "BoolStorage": "?"}


class TorchFileError(ValueError):
    """A ``.pth`` file that is malformed, truncated, or asks for code to run."""


class Storage:
    """A persistent-id storage: its dtype (a NumPy code, or 'bf16'), key and element count;
    ``array`` is filled in from the zip entry or the legacy stream."""

    def __init__(self, code, key, numel):
        self.code, self.key, self.numel, self.array = code, key, numel, None


class PendingTensor:
    """A tensor waiting for its storage's bytes: torch's (storage, offset, size, stride)."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


def _ints(value, what):
    if not isinstance(value, tuple) or not all(type(v) is int and v >= 0 for v in value):
        raise TorchFileError(f"tensor {what} must be a tuple of non-negative ints, got "
                             f"{value!r}")
    return value


def rebuild_tensor(storage, offset, size, stride, *unused):
    if not isinstance(storage, Storage):
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
    return PendingTensor(storage, offset, size, stride)


def rebuild_parameter(data, requires_grad=False, hooks=None, *unused):
    if not isinstance(data, PendingTensor):
        raise TorchFileError(f"a parameter must wrap a tensor, got {type(data).__name__}")
    return data


def ordered_dict(*args):
    if args and not (len(args) == 1 and isinstance(args[0], list)):
        raise TorchFileError("collections.OrderedDict takes no argument or a list of pairs")
    try:
        return OrderedDict(*args)
    except (TypeError, ValueError) as exc:
        raise TorchFileError(f"bad OrderedDict items: {exc}") from None


class Allowed:
    def __init__(self, name, fn):
        self.name, self.fn = name, fn


ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): ordered_dict,
    ("torch._utils", "rebuild_tensor"): rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor,
    ("torch._utils", "rebuild_parameter"): rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): rebuild_parameter,
    **{("torch", name): code for name, code in STORAGE_CODES.items()},
}
