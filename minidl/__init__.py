"""minidl: deep learning by hand on NumPy, and on the GPU through CuPy with the same code.

The layers import one way: backend -> autograd -> kernels -> functions -> layers -> train.
Importing ``minidl`` loads only the backend; the names below (``minidl.Tensor``,
``minidl.functions``, ``minidl.fuse``, ...) load their modules on first use.
"""
import importlib as _importlib

from minidl._openblas import shorten_spin as _shorten_spin

# OpenBLAS's idle threads spin for about 0.1 s after every matrix product, holding the cores
# that minidl's own threads need for the elementwise ops in between (minidl._openblas).
_shorten_spin()

from minidl import backend as _backend  # noqa: E402
from minidl.backend import (  # noqa: F401,E402
    BackendUnavailableError, DeviceMismatchError, get_array_module, get_backend, get_xp,
    use_backend, to_device, to_host, seed, get_default_dtype, set_default_dtype,
)

__version__ = "0.1.0"


def _load_strict():
    from minidl.testing.strict_backend import load
    return load()


_backend.register_backend("strict", _load_strict)
_backend.check_environment()

# name -> module that defines it; the module is imported on first use
_LAZY = {name: "minidl.autograd" for name in (
    "Tensor", "Parameter", "Function", "no_grad", "enable_grad", "is_grad_enabled", "tensor",
    "as_tensor")}
_LAZY["fuse"] = "minidl.fusion"
_SUBMODULES = ("functions", "kernels", "layers", "models", "optim", "train", "data", "init",
               "fusion", "testing", "metrics", "serialization", "parallel", "distributed")


def __getattr__(name):
    if name in _LAZY:
        _importlib.import_module("minidl.functions")  # Tensor's operators come with the ops
        return getattr(_importlib.import_module(_LAZY[name]), name)
    if name in _SUBMODULES:
        return _importlib.import_module(f"minidl.{name}")
    raise AttributeError(f"module 'minidl' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))
