"""The array backend: the one module that decides between NumPy, CuPy and the strict stand-in.

Every op in minidl and minifeat is written once against an array namespace ``xp`` and asks
this module which one to use::

    xp = get_array_module(x)          # numpy, cupy, or minidl.testing.strict
    y = xp.maximum(x, 0)

Backends
--------
``"numpy"``  host memory, the default.
``"cupy"``   an NVIDIA GPU through CuPy (``pip install 'minidl[gpu]'``), imported lazily.
``"strict"`` host memory behind a CuPy-like wall (``minidl.testing.strict``): arrays refuse
             implicit conversion to NumPy and the namespace offers only what CuPy 14.2 has.
             The test suite runs under it to prove the CuPy path without a GPU.

The active backend is chosen by ``use_backend(name)`` (also a context manager), or by the
``MINIDL_BACKEND`` environment variable at start-up.  New arrays (weights, batches) are created
on the active backend; ops follow their inputs (``get_array_module``), and mixing arrays of two
backends in one op raises :class:`DeviceMismatchError`.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy

__all__ = [
    "Backend", "BackendUnavailableError", "DeviceMismatchError", "available_backends",
    "use_backend", "get_backend", "get_xp", "get_array_module", "backend_of", "device_of",
    "to_device", "to_host", "check_same_device", "get_default_dtype", "set_default_dtype",
    "seed", "host_rng", "device_rng", "ndimage", "errstate", "synchronize", "is_array",
]

ENV_VAR = "MINIDL_BACKEND"


class BackendUnavailableError(RuntimeError):
    """The requested backend cannot run here (library missing, or no GPU)."""


class DeviceMismatchError(TypeError):
    """Arrays from two different backends (devices) met in one operation."""


@dataclass
class Backend:
    """One array library and the few things minidl needs to know about it.

    Attributes
    ----------
    name : "numpy" | "cupy" | "strict"
    xp : the array namespace (module-like) used as ``xp.zeros``, ``xp.exp`` ...
    device : a human-readable device name used in error messages ("cpu", "cuda:0", ...).
    ndarray : the array type of this backend.
    asarray : host ``numpy.ndarray`` (or nested lists) -> array of this backend (a copy on GPU).
    asnumpy : array of this backend -> ``numpy.ndarray`` (an explicit device->host copy).
    ndimage : the ``scipy.ndimage``-like module for this backend (``correlate1d`` ...).
    errstate : context manager factory that silences floating-point warnings.
    synchronize : waits for queued device work (a no-op on the host), for honest timings.
    """

    name: str
    xp: Any
    device: str
    ndarray: type
    asarray: Callable[[Any], Any]
    asnumpy: Callable[[Any], numpy.ndarray]
    ndimage_loader: Callable[[], Any]
    errstate: Callable[..., Any]
    synchronize: Callable[[], None] = lambda: None
    _ndimage: Any = field(default=None, repr=False)

    @property
    def ndimage(self):
        if self._ndimage is None:
            self._ndimage = self.ndimage_loader()
        return self._ndimage


# --------------------------------------------------------------------------- loaders

def _load_numpy() -> Backend:
    def _scipy_ndimage():
        import scipy.ndimage
        return scipy.ndimage

    return Backend("numpy", numpy, "cpu", numpy.ndarray, numpy.asarray, numpy.asarray,
                   _scipy_ndimage, numpy.errstate)


def _load_cupy() -> Backend:
    try:
        import cupy
        import cupyx
    except ImportError as exc:
        raise BackendUnavailableError(
            "backend 'cupy' needs CuPy, which is not installed: "
            "run `pip install 'minidl[gpu]'` (cupy-cuda12x; use cupy-cuda12x[ctk] on a machine "
            f"without the CUDA toolkit). Import error: {exc}") from exc
    if not cupy.is_available():
        raise BackendUnavailableError(
            "backend 'cupy' needs an NVIDIA GPU with a working CUDA driver, and CuPy sees none "
            "(cupy.is_available() is False). Use backend 'numpy' on this machine.")

    def _ndimage():
        import cupyx.scipy.ndimage
        return cupyx.scipy.ndimage

    dev = cupy.cuda.Device()
    return Backend("cupy", cupy, f"cuda:{dev.id}", cupy.ndarray, cupy.asarray, cupy.asnumpy,
                   _ndimage, cupyx.errstate, synchronize=lambda: cupy.cuda.Device().synchronize())


_LOADERS: dict[str, Callable[[], Backend]] = {"numpy": _load_numpy, "cupy": _load_cupy}
_loaded: dict[str, Backend] = {}


def register_backend(name: str, loader: Callable[[], Backend]) -> None:
    """Add a backend: ``loader()`` returns its :class:`Backend` (called on first use, and may
    raise :class:`BackendUnavailableError`).  The strict test backend registers itself this
    way (``minidl.testing.strict``), so this module depends on nothing above it."""
    if not isinstance(name, str) or not name or name != name.lower():
        raise ValueError(f"register_backend: name must be a non-empty lower-case str, got "
                         f"{name!r}")
    _LOADERS[name] = loader
    _loaded.pop(name, None)


def _get(name: str) -> Backend:
    if name not in _LOADERS:
        raise ValueError(f"backend must be one of {sorted(_LOADERS)}, got {name!r}")
    if name not in _loaded:
        _loaded[name] = _LOADERS[name]()
    return _loaded[name]


def available_backends() -> list[str]:
    """Names of the backends that can run on this machine (``numpy`` always)."""
    names = []
    for name in _LOADERS:
        try:
            _get(name)
            names.append(name)
        except BackendUnavailableError:
            pass
    return names


# --------------------------------------------------------------------------- the switch

def _initial_backend_name() -> str:
    """The backend named by the environment (checked when first used: the strict backend
    registers itself after this module loads)."""
    return os.environ.get(ENV_VAR, "numpy").strip().lower() or "numpy"


def check_environment() -> None:
    """Raise a ValueError now when ``MINIDL_BACKEND`` names no registered backend."""
    if _active_name not in _LOADERS:
        raise ValueError(f"environment variable {ENV_VAR} must be one of {sorted(_LOADERS)}, "
                         f"got {_active_name!r}")


_active_name = _initial_backend_name()


class use_backend(contextlib.ContextDecorator):
    """Make ``name`` the active backend.

    Called plainly it switches for good; used as ``with use_backend("cupy"): ...`` it switches
    back on exit.  Raises :class:`BackendUnavailableError` at once when the backend cannot run.
    """

    def __init__(self, name: str):
        global _active_name
        if not isinstance(name, str):
            raise TypeError(f"backend name must be a str, got {type(name).__name__}")
        _get(name.lower())  # fail now, with the clear message, not at the first op
        self._previous = _active_name
        self.name = _active_name = name.lower()

    def __enter__(self):
        return _get(self.name)

    def __exit__(self, *exc):
        global _active_name
        _active_name = self._previous
        return False


def get_backend() -> Backend:
    """The active :class:`Backend`."""
    return _get(_active_name)


def get_xp():
    """The active backend's array namespace (where new arrays are created)."""
    return get_backend().xp


_TENSOR_TYPES: tuple[type, ...] = ()


def _register_tensor_type(cls: type) -> None:
    """Let ``get_array_module`` see through minidl Tensors (called by minidl.autograd)."""
    global _TENSOR_TYPES
    _TENSOR_TYPES = _TENSOR_TYPES + (cls,)


def _unwrap(a):
    return a.data if _TENSOR_TYPES and isinstance(a, _TENSOR_TYPES) else a


def backend_of(a) -> Backend | None:
    """The backend an array (or Tensor) lives on; ``None`` for Python scalars and NumPy scalars."""
    a = _unwrap(a)
    if isinstance(a, numpy.ndarray):
        return _get("numpy")
    mod = type(a).__module__ or ""
    if mod.startswith("cupy"):
        return _get("cupy")
    if getattr(type(a), "__minidl_strict__", False):
        return _get("strict")
    return None


def is_array(a) -> bool:
    """True for an array of any backend (not for Python or NumPy scalars)."""
    return backend_of(a) is not None


def device_of(a) -> str:
    """A readable device name for an array: 'cpu', 'cuda:0', 'strict', or 'scalar'."""
    b = backend_of(a)
    return "scalar" if b is None else b.device


def check_same_device(*arrays, names: tuple[str, ...] | None = None, where: str = "op") -> Backend:
    """Return the one backend all ``arrays`` share; raise :class:`DeviceMismatchError` if two differ.

    Scalars are ignored.  With none but scalars, the active backend is returned.
    """
    found: list[tuple[str, Backend, Any]] = []
    for i, a in enumerate(arrays):
        b = backend_of(a)
        if b is None:
            continue
        label = names[i] if names and i < len(names) else f"argument {i}"
        found.append((label, b, _unwrap(a)))
    if not found:
        return get_backend()
    first = found[0]
    for other in found[1:]:
        if other[1].name != first[1].name:
            raise DeviceMismatchError(
                f"{where}: inputs are on different devices: {first[0]} is on {first[1].device} "
                f"({type(first[2]).__module__}.{type(first[2]).__name__}) but {other[0]} is on "
                f"{other[1].device} ({type(other[2]).__module__}.{type(other[2]).__name__}). "
                "Move them to one device first, e.g. with minidl.to_device(x) or model.to(...).")
    return first[1]


def get_array_module(*arrays):
    """The array namespace of ``arrays`` (all on one backend), else the active backend's."""
    return check_same_device(*arrays, where="get_array_module").xp


# --------------------------------------------------------------------------- transfers

def to_host(a) -> numpy.ndarray | Any:
    """A ``numpy.ndarray`` copy of an array from any backend (NumPy arrays pass through).

    Python and NumPy scalars pass through unchanged.
    """
    a = _unwrap(a)
    b = backend_of(a)
    return a if b is None else b.asnumpy(a)


def to_device(a, backend: str | None = None):
    """``a`` as an array of ``backend`` (default: the active one), copying across devices."""
    target = get_backend() if backend is None else _get(backend)
    a = _unwrap(a)
    source = backend_of(a)
    if source is not None and source.name == target.name:
        return a
    if source is not None:
        a = source.asnumpy(a)
    return target.asarray(a)


# --------------------------------------------------------------------------- dtype

_default_dtype = numpy.dtype(numpy.float32)


def get_default_dtype() -> numpy.dtype:
    """The floating dtype of new parameters and batches (float32 unless changed)."""
    return _default_dtype


def set_default_dtype(dtype) -> None:
    """Set the default floating dtype: float32 (the default) or float64 (for gradient checks).

    float16 is refused with a ValueError, not supported: training in it would need float32
    accumulation in several places (dropout's RNG draws no float16, batch-norm statistics and
    softmax/log-softmax sums lose too much precision), which minidl does not implement.  Other
    dtypes (integer, bool, complex) raise TypeError.
    """
    global _default_dtype
    dt = numpy.dtype(dtype)
    if dt == numpy.float16:
        raise ValueError("set_default_dtype: float16 training is not supported (dropout's RNG, "
                         "batch-norm statistics and softmax would need float32 accumulation); "
                         "supported dtypes: float32, float64; got float16")
    if dt not in (numpy.float32, numpy.float64):
        raise TypeError(f"default dtype must be float32 or float64, got {dt}")
    _default_dtype = dt


# --------------------------------------------------------------------------- randomness

_seed: int | None = None
_host_rng = numpy.random.default_rng()
_device_rngs: dict[str, Any] = {}


def seed(value: int) -> None:
    """Seed every random source minidl uses: the host Generator (weights, shuffling), NumPy's
    legacy global state, and each backend's device Generator (dropout masks)."""
    global _seed, _host_rng
    if not isinstance(value, (int, numpy.integer)) or isinstance(value, bool) or value < 0:
        raise ValueError(f"seed must be a non-negative int, got {value!r}")
    _seed = int(value)
    _host_rng = numpy.random.default_rng(_seed)
    numpy.random.seed(_seed % 2**32)
    _device_rngs.clear()
    if "cupy" in _loaded:
        _loaded["cupy"].xp.random.seed(_seed)


def host_rng() -> numpy.random.Generator:
    """The seeded host Generator.  Draw initial weights here, then ``to_device`` them: they are
    then identical on every backend (and CuPy's Generator has no ``normal``)."""
    return _host_rng


def device_rng(xp=None):
    """A seeded Generator on the device of ``xp`` (default: active backend).

    Only use methods that CuPy's Generator has: ``random``, ``standard_normal``, ``integers``,
    ``uniform``.
    """
    b = get_backend() if xp is None else _backend_for_xp(xp)
    if b.name not in _device_rngs:
        s = int(_host_rng.integers(2**31)) if _seed is None else _seed + 1
        _device_rngs[b.name] = numpy.random.default_rng(s) if b.name == "numpy" \
            else b.xp.random.default_rng(s)
    return _device_rngs[b.name]


def _backend_for_xp(xp) -> Backend:
    for b in list(_loaded.values()):
        if b.xp is xp:
            return b
    for name in _LOADERS:
        try:
            b = _get(name)
        except BackendUnavailableError:  # e.g. no GPU: xp cannot be CuPy's, try the next
            continue
        if b.xp is xp:
            return b
    raise ValueError(f"xp must be an array namespace of a minidl backend, got {xp!r}")


# --------------------------------------------------------------------------- helpers for ops

def ndimage(xp=None):
    """``scipy.ndimage`` for NumPy, ``cupyx.scipy.ndimage`` for CuPy, the strict twin otherwise."""
    return (get_backend() if xp is None else _backend_for_xp(xp)).ndimage


def errstate(xp=None, **kwargs):
    """Floating-point error context (``numpy.errstate`` / ``cupyx.errstate``)."""
    return (get_backend() if xp is None else _backend_for_xp(xp)).errstate(**kwargs)


def synchronize(xp=None) -> None:
    """Wait for queued device work; call before reading a timer."""
    (get_backend() if xp is None else _backend_for_xp(xp)).synchronize()
