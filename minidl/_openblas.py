"""OpenBLAS's idle spin, shortened so that minidl's own threads get the cores.

After every matrix product OpenBLAS (NumPy's BLAS on Linux and Windows wheels) keeps its worker
threads spinning for about 0.1 s, waiting for the next one.  In a training step the elementwise
ops between two products (ReLU, pooling, batch norm, the convolution's copies) then run while
those workers still hold the cores: measured on a 2-core CPU, the MNIST CNN's step takes 57 ms
instead of 43 ms.  OpenBLAS reads the spin length from ``OPENBLAS_THREAD_TIMEOUT`` (2**k
cycles, k from 4 to 30) when it starts its threads.

:func:`shorten_spin` (run by ``import minidl``) sets it to 4, a spin of a few microseconds,
unless you set the variable yourself:

- NumPy not imported yet: the variable is set and OpenBLAS reads it when NumPy loads it;
- NumPy already imported (``import numpy`` before ``import minidl``): the variable is set, each
  loaded OpenBLAS re-reads its environment and stops its idle threads, which it restarts, with
  the short spin, on the next product.  This uses OpenBLAS's exported ``openblas_read_env`` and
  ``blas_thread_shutdown_`` (the calls its own fork handler makes); a BLAS without them (MKL,
  Accelerate, a build that renamed them) is left alone.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import sys

__all__ = ["shorten_spin", "loaded_openblas", "kernel_names", "set_num_threads",
           "one_thread_each"]

ENV_VAR = "OPENBLAS_THREAD_TIMEOUT"
SHORT_SPIN = "4"


def loaded_openblas() -> list:
    """The OpenBLAS libraries mapped into this process that export the calls we need, as
    ``ctypes.CDLL`` handles (Linux only: read from ``/proc/self/maps``; empty elsewhere)."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split(None, 5)[5].strip() for line in f if "openblas" in line.lower()
                     and len(line.split(None, 5)) == 6}
    except OSError:
        return []
    libs = []
    for path in sorted(paths):
        if not os.path.isfile(path):
            continue
        try:
            lib = ctypes.CDLL(path)  # already loaded: the same handle, nothing runs again
        except OSError:
            continue
        if all(hasattr(lib, name) for name in ("openblas_read_env", "blas_thread_shutdown_",
                                              "openblas_thread_timeout")):
            libs.append(lib)
    return libs


def shorten_spin() -> bool:
    """Shorten OpenBLAS's idle spin (see the module docstring); False when the user set
    ``OPENBLAS_THREAD_TIMEOUT`` themselves (it is respected) or no OpenBLAS could be told."""
    if ENV_VAR in os.environ:
        return False
    os.environ[ENV_VAR] = SHORT_SPIN
    if "numpy" not in sys.modules:
        return True  # read when NumPy loads OpenBLAS
    libs = loaded_openblas()
    for lib in libs:
        lib.openblas_read_env()
        lib.blas_thread_shutdown_()
    return bool(libs)


def kernel_names() -> list:
    """The kernel family each loaded OpenBLAS uses ("Haswell": AVX2, "SkylakeX": AVX-512, ...),
    which sets its GEMM rate: on the 2-core AMD EPYC (AVX-512) of our benchmarks, float32 GEMM
    runs at 239 GFLOP/s with Haswell kernels and 448 with SkylakeX ones.  OpenBLAS picks the
    family when it loads, from the CPU or from ``OPENBLAS_CORETYPE``."""
    names = []
    for lib in loaded_openblas():
        if hasattr(lib, "gotoblas_corename"):
            lib.gotoblas_corename.restype = ctypes.c_char_p
            names.append(lib.gotoblas_corename().decode())
    return names


# the thread calls' names in OpenBLAS builds: plain, and as NumPy's / SciPy's wheels rename them
_THREAD_CALLS = (("openblas_set_num_threads", "openblas_get_num_threads"),
                 ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
                 ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
                 ("openblas_set_num_threads64_", "openblas_get_num_threads64_"))


def _thread_calls(lib):
    """(setter, getter) of ``lib``'s thread count, or None when it exports neither pair."""
    for setter, getter in _THREAD_CALLS:
        if hasattr(lib, setter) and hasattr(lib, getter):
            return getattr(lib, setter), getattr(lib, getter)
    return None


def set_num_threads(n: int) -> list:
    """Make every loaded OpenBLAS use ``n`` threads for its next products (OpenBLAS otherwise
    takes one per core when it loads, unless ``OPENBLAS_NUM_THREADS`` says otherwise).  Returns
    the thread count each library now reports; empty when none exports the calls."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive int, got {n!r}")
    now = []
    for lib in loaded_openblas():
        calls = _thread_calls(lib)
        if calls is not None:
            calls[0](ctypes.c_int(n))
            now.append(int(calls[1]()))
    return now


_numpy_calls: list | None = None  # NumPy's OpenBLAS thread calls, found once


def _numpy_thread_calls() -> list:
    """The (setter, getter) pairs of the OpenBLAS libraries loaded once NumPy is (reading
    /proc/self/maps takes about a millisecond, so this is done once per process)."""
    global _numpy_calls
    if _numpy_calls is None:
        import numpy  # noqa: F401 - NumPy's OpenBLAS must be loaded to be found
        _numpy_calls = [c for c in map(_thread_calls, loaded_openblas()) if c is not None]
    return _numpy_calls


@contextlib.contextmanager
def one_thread_each():
    """Run NumPy's OpenBLAS on one thread inside the block, for a caller that runs several
    small matrix products at once on its own threads; the block gets True, or False when
    no OpenBLAS could be told (then the caller should not add threads of its own).

    Small products parallelise badly inside OpenBLAS: 16 products of (3136, 32) @ (32, 64)
    run at 117-173 GFLOP/s on 2 cores with OpenBLAS's 2 threads each, and at 178-197 with
    one thread each, two products at a time.  The thread count is global to the library, so
    a product another thread starts meanwhile also runs on one thread; it is put back on
    leaving the block (a microsecond each way)."""
    calls = _numpy_thread_calls()
    before = [int(get()) for _, get in calls]
    for set_, _ in calls:
        set_(ctypes.c_int(1))
    try:
        yield bool(calls)
    finally:
        for (set_, _), n in zip(calls, before):
            set_(ctypes.c_int(n))
