"""The strict backend refuses what real CuPy refuses: checked against the genuine library.

``cupy-cuda12x`` imports without a GPU.  There, a real ``cupy.ndarray`` can be wrapped around
host memory (its pointer is never dereferenced unless a kernel runs), so every refusal that CuPy
makes *before* touching the device can be compared with the strict backend's.  Calls where
CuPy goes to the device first (``CUDARuntimeError``, or an ``ImportError`` of a CUDA library)
are undecidable there and are skipped with that reason.  With a GPU the arrays are real device
copies and every case is decided (a kernel run on a host pointer would be an illegal memory
access, which poisons the process's CUDA context for every later test).
"""
import importlib
import operator
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.ndimage

from minidl.testing import _strict_manifest as M
from minidl.testing import strict as S

cupy = pytest.importorskip("cupy")
cupyx = pytest.importorskip("cupyx")

_keep = []  # host buffers behind the real cupy arrays must outlive them


_GPU = cupy.is_available()


def _real(a):
    """A genuine cupy.ndarray: a device copy with a GPU, else one whose data pointer is host
    memory (never dereferenced)."""
    a = np.ascontiguousarray(a)
    if _GPU:
        return cupy.asarray(a)
    _keep.append(a)
    mem = cupy.cuda.UnownedMemory(a.ctypes.data, a.nbytes, a, device_id=0)
    return cupy.ndarray(a.shape, a.dtype, cupy.cuda.MemoryPointer(mem, 0))


LIBS = {"cupy": SimpleNamespace(xp=cupy, cx=cupyx, arr=_real),
        "strict": SimpleNamespace(xp=S, cx=S.cupyx, arr=S.asarray)}


def _a(L):
    return L.arr(np.arange(6.0).reshape(2, 3))


def _i(L):
    return L.arr(np.array([0, 1]))


def _s(L):
    return L.arr(np.array(1))


# id -> call(L); each is run on real CuPy and on the strict backend
CASES = {
    "np.asarray": lambda L: np.asarray(_a(L)),
    "np.array of 0-d arrays": lambda L: np.array([_s(L), _s(L)]),
    "np.float32 of 0-d": lambda L: np.float32(_s(L)),
    "np.insert (no cupy twin)": lambda L: np.insert(_a(L), 0, 1.0),
    "np.lib.stride_tricks.as_strided": lambda L: np.lib.stride_tricks.as_strided(_a(L)),
    "scipy.ndimage on device array": lambda L: scipy.ndimage.correlate1d(_a(L), [1.0, 2.0]),
    "list index with 0-d array": lambda L: [1, 2][_s(L)],
    "operator.index": lambda L: operator.index(_s(L)),
    "bool of many elements": lambda L: bool(_a(L)),
    "float of many elements": lambda L: float(_a(L)),
    "hash": lambda L: hash(_a(L)),
    "clip(min=)": lambda L: L.xp.clip(_a(L), min=0),
    "sum(where=)": lambda L: L.xp.sum(_a(L), where=_a(L)),
    "ndarray.sum(where=)": lambda L: _a(L).sum(where=_a(L)),
    "ndarray.max(initial=)": lambda L: _a(L).max(initial=0),
    "mean(where=)": lambda L: L.xp.mean(_a(L), where=_a(L)),
    "std(mean=)": lambda L: L.xp.std(_a(L), mean=_a(L)),
    "take_along_axis without axis": lambda L: L.xp.take_along_axis(_a(L), _i(L)),
    "lexsort(axis=)": lambda L: L.xp.lexsort(_a(L), axis=0),
    "argpartition(kind=)": lambda L: L.xp.argpartition(_a(L), 1, kind="introselect"),
    "ufunc where=": lambda L: L.xp.add(_a(L), 1, where=_a(L)),
    "Generator.normal": lambda L: L.xp.random.Generator.normal,
    "Generator.permutation": lambda L: L.xp.random.Generator.permutation,
    "Generator.choice": lambda L: L.xp.random.Generator.choice,
    "Generator.shuffle": lambda L: L.xp.random.Generator.shuffle,
    "RandomState.random": lambda L: L.xp.random.RandomState.random,
    "maximum.reduce": lambda L: L.xp.maximum.reduce(_a(L)),
    "np.maximum.reduce (NEP 13)": lambda L: np.maximum.reduce(_a(L)),
    "logical_or.reduce": lambda L: L.xp.logical_or.reduce(_a(L)),
    "maximum.accumulate": lambda L: L.xp.maximum.accumulate(_a(L)),
    "multiply.at": lambda L: L.xp.multiply.at(_a(L), _i(L), 2.0),
    "divide.at": lambda L: L.xp.divide.at(_a(L), _i(L), 2.0),
    "add.at (allowed)": lambda L: L.xp.add.at(_a(L), _i(L), 2.0),
    "as_strided(writeable=)": lambda L: L.xp.lib.stride_tricks.as_strided(_a(L), writeable=False),
    "sliding_window_view(writeable=True)":
        lambda L: L.xp.lib.stride_tricks.sliding_window_view(_a(L), 2, writeable=True),
    "argsort(kind='quicksort')": lambda L: L.xp.argsort(_a(L), kind="quicksort"),
    "ndarray.sort(kind='quicksort')": lambda L: _a(L).sort(kind="quicksort"),
    "histogram(bins='auto')": lambda L: L.xp.histogram(_a(L), bins="auto"),
    "pad(mode='median')": lambda L: L.xp.pad(_a(L), 1, mode="median"),
    "zeros(dtype=object)": lambda L: L.xp.zeros(2, dtype=object),
    "xp.errstate": lambda L: L.xp.errstate,
    "xp.insert": lambda L: L.xp.insert,
    "xp.geomspace": lambda L: L.xp.geomspace,
    "xp.linalg.vector_norm": lambda L: L.xp.linalg.vector_norm,
    "ndarray.__imatmul__": lambda L: _a(L).__imatmul__,
    "ndarray.resize": lambda L: _a(L).resize,
    "ndarray.__index__": lambda L: _a(L).__index__,
    "ufunc with numpy array": lambda L: L.xp.add(_a(L), np.ones(3)),
    "ufunc with list": lambda L: L.xp.add(_a(L), [1.0, 2.0, 3.0]),
    "operator with numpy array": lambda L: _a(L) + np.ones(3),
    "matmul with numpy array": lambda L: _a(L) @ np.ones(3),
    "ndarray.dot with numpy array": lambda L: _a(L).dot(np.ones(3)),
    "concatenate with numpy array": lambda L: L.xp.concatenate([_a(L), np.ones((2, 3))]),
    "setitem numpy array": lambda L: _a(L).__setitem__(Ellipsis, np.ones(3)),
    "setitem size-1 numpy array": lambda L: _a(L).__setitem__(Ellipsis, np.ones(1)),
    "setitem list": lambda L: _a(L).__setitem__(0, [1.0, 2.0, 3.0]),
    "fill numpy array": lambda L: _a(L).fill(np.ones(3)),
    "copyto numpy array": lambda L: L.xp.copyto(_a(L), np.ones(3)),
    "cupyx.errstate(where=)": lambda L: L.cx.errstate(where="ignore"),
    # metadata-only calls that succeed on both
    "T shape": lambda L: _a(L).T.shape,
    "reshape shape": lambda L: _a(L).reshape(3, 2).shape,
    "scalar index is 0-d": lambda L: _a(L)[0, 1].shape,
    "len": lambda L: len(_a(L)),
}

_UNDECIDABLE_MODULES = ("cupy_backends", "cupy.cuda", "cupy._environment")


def _outcome(call, L):
    try:
        return "ok", call(L)
    except Exception as exc:  # noqa: BLE001 - the exception type is the result
        return "raised", exc


def _went_for_device(exc):
    mod = type(exc).__module__ or ""
    return mod.startswith(_UNDECIDABLE_MODULES) or isinstance(exc, (ImportError, OSError))


@pytest.mark.parametrize("case", list(CASES))
def test_strict_refuses_what_cupy_refuses(case):
    call = CASES[case]
    c_kind, c_val = _outcome(call, LIBS["cupy"])
    if c_kind == "raised" and _went_for_device(c_val):
        pytest.skip(f"undecidable without a GPU: CuPy went for the device first "
                    f"({type(c_val).__name__}: {str(c_val)[:80]})")
    s_kind, s_val = _outcome(call, LIBS["strict"])
    if c_kind == "ok":
        assert s_kind == "ok", f"CuPy accepts {case!r} but strict raised {s_val!r}"
        assert s_val == c_val
        return
    assert s_kind == "raised", f"CuPy raises {c_val!r} for {case!r} but strict accepted it"
    ct, st = type(c_val), type(s_val)
    assert issubclass(st, ct) or issubclass(ct, st), \
        f"{case}: CuPy raises {ct.__name__}({c_val}) but strict raises {st.__name__}({s_val})"


def test_manifest_matches_the_installed_cupy():
    if cupy.__version__ != M.cupy_version():
        pytest.skip(f"installed CuPy {cupy.__version__} differs from the manifest's "
                    f"{M.cupy_version()}")
    for ns in ("cupy", "cupy.linalg", "cupy.fft", "cupy.random", "cupy.lib.stride_tricks",
               "cupyx", "cupyx.scipy.ndimage"):
        mod = importlib.import_module(ns)
        listed = set(M.namespace(ns))
        absent = sorted(n for n in listed if not hasattr(mod, n))
        assert absent == [], f"{ns}: manifest names missing in CuPy: {absent}"
    methods = {n for n in M.manifest()["ndarray"]}
    assert sorted(n for n in methods if not hasattr(cupy.ndarray, n)) == []
    assert sorted(n for n in M.manifest()["random.Generator"]
                  if not hasattr(cupy.random.Generator, n)) == []


def test_strict_namespace_names_exist_in_real_cupy():
    public = {n for n in dir(S) if not n.startswith("_")} - {"cupyx"}
    assert sorted(n for n in public if not hasattr(cupy, n)) == []
    for name in ("normal", "permutation", "choice", "shuffle"):
        assert hasattr(S.random.Generator, name) == hasattr(cupy.random.Generator, name)
    for name in dir(S.ndarray):
        if not name.startswith("_"):
            assert hasattr(cupy.ndarray, name), f"strict.ndarray.{name} is not on cupy.ndarray"
    for name in ("__index__", "__imatmul__", "__array_namespace__", "resize", "__contains__"):
        assert hasattr(S.ndarray, name) == hasattr(cupy.ndarray, name), name
