"""Shared plumbing for the benchmark scripts: timing with warm-up and medians, peers, tables,
JSON output."""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import sys
import time

import numpy

from minidl import backend as B

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def timeit(fn, *, repeat=5, warmup=1, sync=None, min_time=0.0) -> float:
    """Median seconds of ``fn()`` over ``repeat`` runs after ``warmup`` runs.  ``sync`` is
    called before each clock read (device synchronisation)."""
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    times = []
    while len(times) < repeat or sum(times) < min_time:
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def cupy_backend():
    """The CuPy backend, or None with the reason printed once."""
    try:
        return B._get("cupy")
    except B.BackendUnavailableError as exc:
        print(f"[cupy columns: not available -- {str(exc).split(':')[0]}]")
        return None


def use_threads(threads: int | None) -> list:
    """Run minidl on ``threads`` host threads: its own pool and NumPy's OpenBLAS, which would
    otherwise take every core (16 on a GPU machine, next to PyTorch's 2).  Returns the thread
    count each OpenBLAS now reports (empty: not OpenBLAS).  None: leave both alone."""
    if not threads:
        return []
    from minidl import _openblas, parallel
    parallel.set_num_threads(threads)
    return _openblas.set_num_threads(threads)


def torch_or_none(threads: int | None = None):
    try:
        import torch
    except ImportError:
        print("[torch columns: not available -- pip install torch==2.13.0]")
        return None
    if threads:
        torch.set_num_threads(threads)
    return torch


# glibc returns freed blocks of 128 kB .. 32 MB to the OS and maps fresh ones on the next
# allocation, so a layer timed alone page-faults its multi-MB outputs and gradients on every call
# (the max-pool layer: 16 ms instead of 4), which a training loop, reusing the same sizes every
# step, hardly does (measured: 0.5 faults per step).  These settings keep freed memory in the
# process, for minidl and its peers alike.
STEADY_MALLOC = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824"


def rerun_with_steady_malloc(module: str, argv) -> None:
    """Re-execute ``python -m module argv`` with :data:`STEADY_MALLOC` unless GLIBC_TUNABLES is
    already set (then it returns, and the caller goes on) or this is not Linux.  Only for a
    benchmark run as a program (its ``__main__`` block), never from a function someone
    imported: it replaces the process.  ``--page-faults`` on the command line skips it."""
    if sys.platform != "linux" or "GLIBC_TUNABLES" in os.environ or "--page-faults" in argv:
        return
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", module, *argv],
              dict(os.environ, GLIBC_TUNABLES=STEADY_MALLOC))


def machine() -> dict:
    info = {"python": platform.python_version(), "numpy": numpy.__version__,
            "machine": platform.machine(), "processor": platform.processor(),
            "cpu_count": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    # NumPy's BLAS kernels set the GEMM peak: OpenBLAS's AVX2 ("Haswell") kernels run at about
    # half the rate of its AVX-512 ("SkylakeX") ones on an AVX-512 CPU
    from minidl._openblas import kernel_names
    info["openblas_kernels"] = ",".join(kernel_names()) or "n/a (not OpenBLAS)"
    info["OPENBLAS_CORETYPE"] = os.environ.get("OPENBLAS_CORETYPE", "(unset: OpenBLAS chooses)")
    info["GLIBC_TUNABLES"] = os.environ.get("GLIBC_TUNABLES", "(unset: glibc defaults)")
    return info


def fmt(v, spec=".1f"):
    if v is None:
        return "n/a"
    if isinstance(v, str):
        return v
    if isinstance(v, (int, numpy.integer)):
        return str(v)
    return format(v, spec)


def print_table(title: str, columns: list[str], rows: list[list]) -> str:
    cells = [[str(c) for c in columns]] + [[fmt(v) if not isinstance(v, str) else v
                                            for v in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = [title, "  ".join(c.ljust(w) for c, w in zip(cells[0], widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                        enumerate(zip(r, widths))) for r in cells[1:]]
    text = "\n".join(lines)
    print(text + "\n", flush=True)
    return text


def save_json(name: str, payload: dict) -> pathlib.Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"machine": machine(), "time": time.strftime("%Y-%m-%d %H:%M:%S"), **payload}
    path.write_text(json.dumps(payload, indent=2, default=str))
    print(f"wrote {path}")
    return path


def positive_int(text):
    """argparse type: a positive integer, with a message naming the bad text."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive integer")
    return value
