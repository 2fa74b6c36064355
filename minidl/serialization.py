"""Saving and loading state dicts as ``.npz`` files, without pickle.

The file holds one array per state_dict key (dotted names such as ``conv1.W``) plus a small
``__minidl__`` entry with the format version.  Loading uses ``allow_pickle=False``, so a file can
never execute code; arrays come back on the host and ``Module.load_state_dict`` moves them to
the module's device (saving a GPU model copies to the host and leaves the model on the GPU).

Saving writes ``<name>.npz.pid<PID>.<random>.tmp.npz`` next to the target and renames it over
the target when complete.  A process killed during the write (SIGKILL, or SIGTERM without a
handler) cannot remove its temporary file, so every save first removes the temporaries of the
same target whose writing process (PID in the name) no longer exists.  Loading checks each
entry's header against the entry's real size before allocating, so a corrupt header claiming
gigabytes is a ValueError naming the file and the entry, not a MemoryError.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import tempfile
import zipfile
from collections import OrderedDict

import numpy

from minidl import backend as B

__all__ = ["save_state", "load_state", "remove_stale_temporaries", "FORMAT_VERSION",
           "json_to_array", "array_to_json", "save_checkpoint", "load_checkpoint"]

FORMAT_VERSION = 1
_META = "__minidl__"


def _process_exists(pid: int) -> bool:
    """Whether a process with this PID exists (one of another user's counts as existing)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def remove_stale_temporaries(path) -> list[pathlib.Path]:
    """Remove the temporary files that ``save_state`` runs on ``path`` left behind when their
    process died mid-write (``<name>.npz.pid<PID>.<random>.tmp.npz`` whose PID no longer
    exists); return the paths removed.  Temporaries of live processes are kept."""
    path = pathlib.Path(path)
    pattern = re.compile(re.escape(path.name) + r"\.pid(\d+)\.[^.]+\.tmp\.npz")
    removed = []
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m is None or _process_exists(int(m.group(1))):
            continue
        try:
            entry.unlink()
            removed.append(entry)
        except FileNotFoundError:  # another save removed it first
            pass
    return removed


def save_state(path, state) -> None:
    """Write ``state`` (name -> array on any device) to ``path`` atomically.

    The data goes to a temporary file named after ``path`` and this process's PID, renamed
    over ``path`` when complete; leftovers of earlier saves to ``path`` killed mid-write are
    removed first (:func:`remove_stale_temporaries`)."""
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
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f"{path.name}.pid{os.getpid()}.", suffix=".tmp.npz",
                               dir=path.parent)
    os.close(fd)
    try:
        numpy.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _check_entry_sizes(path: pathlib.Path) -> None:
    """Raise ValueError if an entry's ``.npy`` header claims more data than the entry holds
    (a corrupt or crafted header would otherwise make NumPy allocate it: MemoryError)."""
    fmt = numpy.lib.format
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with zf.open(info) as f:
                    version = fmt.read_magic(f)
                    read = fmt.read_array_header_1_0 if version == (1, 0) \
                        else fmt.read_array_header_2_0
                    shape, _, dtype = read(f)
                    held = info.file_size - f.tell()
                claimed = dtype.itemsize
                for n in shape:
                    claimed *= int(n)
                if claimed > held and not dtype.hasobject:  # object: numpy.load refuses it
                    break
            else:
                return
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise ValueError(f"load_state: {str(path)!r} is not a readable .npz state file "
                         f"({type(exc).__name__}: {exc})") from exc
    raise ValueError(f"load_state: {str(path)!r} entry {info.filename[:-4]!r} claims shape "
                     f"{tuple(shape)} {dtype} ({claimed / 1e9:.3g} GB) but holds only {held} "
                     "bytes of data: the file is corrupt or truncated")


def load_state(path) -> "OrderedDict[str, numpy.ndarray]":
    """Read a state dict written by :func:`save_state` (host arrays, file order)."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"load_state: no such file: {str(path)!r}")
    if not zipfile.is_zipfile(path):  # else numpy.load guesses "pickled data": misleading
        raise ValueError(f"load_state: {str(path)!r} is not a readable .npz state file "
                         "(not a zip archive)")
    _check_entry_sizes(path)
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


# --------------------------------------------------------------------------- checkpoints

def json_to_array(obj) -> numpy.ndarray:
    """``obj`` (JSON-serialisable: numbers of any size, strings, lists, dicts) as a uint8 array
    of its UTF-8 JSON text, so that it can travel in a ``.npz`` without pickle.  Random
    generator states (128-bit integers) are stored this way."""
    return numpy.frombuffer(json.dumps(obj, sort_keys=True).encode("utf-8"), dtype=numpy.uint8)


def array_to_json(array):
    """The object that :func:`json_to_array` stored."""
    array = numpy.asarray(array)
    if array.dtype != numpy.uint8 or array.ndim != 1:
        raise ValueError(f"array_to_json: expected a 1-D uint8 array, got {array.dtype} "
                         f"{array.shape}")
    return json.loads(array.tobytes().decode("utf-8"))


def save_checkpoint(path, parts) -> None:
    """Write several named state dicts (``{"model": {...}, "optimizer": {...}, ...}``, each
    name -> array) to one ``.npz`` file, atomically (:func:`save_state`): keys become
    ``part/key``.  A process killed during the write leaves the previous file intact."""
    flat = OrderedDict()
    for part, state in parts.items():
        if "/" in part:
            raise ValueError(f"save_checkpoint: part names must not contain '/', got {part!r}")
        for k, v in state.items():
            flat[f"{part}/{k}"] = v
    save_state(path, flat)


def load_checkpoint(path) -> "dict[str, OrderedDict]":
    """The parts that :func:`save_checkpoint` wrote: part -> (key -> host array)."""
    parts: dict[str, OrderedDict] = {}
    for key, value in load_state(path).items():
        part, sep, rest = key.partition("/")
        if not sep:
            raise ValueError(f"load_checkpoint: {str(path)!r} holds {key!r}, not a "
                             "checkpoint entry (part/key): is it a plain model file?")
        parts.setdefault(part, OrderedDict())[rest] = value
    return parts
