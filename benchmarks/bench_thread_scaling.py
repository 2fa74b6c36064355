"""How NumPy calls scale over two host threads, by array size: why SIFT's keypoint chunks gain
little from a second core while a plain elementwise loop over big arrays gains more.

For each operation and size, the same sequence of calls runs twice in one thread (serial) and
once in each of two threads at the same time, on separate arrays (parallel); the speedup is
serial / parallel (2.0 = perfect, 1.0 = nothing, below 1 = slower than one thread).  NumPy
releases the GIL inside each call's loop, so what is left serial is the Python between calls
and NumPy's own per-call work (argument parsing, allocation), and each call hands the GIL over
between the threads: on calls of a few microseconds the hand-offs dominate.  Large arrays
instead share the memory bandwidth.

    python -m benchmarks.bench_thread_scaling [--repeat 5] [--sizes 10000 100000 1000000]

The operations are the kinds SIFT's descriptor stage is made of: an elementwise product
(memory-bound), ``exp`` (compute-bound), a boolean compression and a block gather (fancy
indexing of windows, as ``GradientSampler.windows``).
"""
from __future__ import annotations

import argparse
import pathlib
import statistics
import sys
import threading
import time

import numpy

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks._common import positive_int, print_table, rerun_with_steady_malloc, save_json  # noqa: E402,E501


def _operations(n: int, rng):
    """``{name: make()}``: ``make()`` builds one thread's own arrays and returns a call that
    runs the operation once on arrays of ``n`` elements."""
    def product():
        a, b = rng.random(n, dtype=numpy.float32), rng.random(n, dtype=numpy.float32)
        out = numpy.empty_like(a)
        return lambda: numpy.multiply(a, b, out=out)

    def exp():
        a = rng.random(n, dtype=numpy.float32)
        out = numpy.empty_like(a)
        return lambda: numpy.exp(a, out=out)

    def compress():
        # runs of kept samples, as the rows of a rotated patch in its square window
        a = rng.random(n, dtype=numpy.float32)
        mask = numpy.arange(n) % 41 < 25
        return lambda: a[mask]

    def gather():
        side = 41  # windows of radius 20 out of an image 4x the windows' area
        k = max(1, n // (side * side))
        img = rng.random((4 * side + 64, 4 * side + 64), dtype=numpy.float32)
        H, W = img.shape
        view = numpy.lib.stride_tricks.as_strided(
            img, shape=(H - side + 1, W - side + 1, side, side),
            strides=img.strides + img.strides)
        r = rng.integers(0, H - side + 1, k)
        c = rng.integers(0, W - side + 1, k)
        return lambda: view[r, c]

    return {"multiply": product, "exp": exp, "compress (60% kept)": compress,
            "window gather": gather}


def _time_calls(call, calls: int) -> None:
    for _ in range(calls):
        call()


def speedup(make, calls: int, repeat: int) -> tuple[float, float, float]:
    """(serial s, parallel s, serial / parallel), medians over ``repeat`` rounds."""
    f1, f2 = make(), make()
    _time_calls(f1, 3)
    _time_calls(f2, 3)
    serial, parallel = [], []
    for _ in range(repeat):
        t0 = time.perf_counter()
        _time_calls(f1, calls)
        _time_calls(f2, calls)
        serial.append(time.perf_counter() - t0)
        threads = [threading.Thread(target=_time_calls, args=(f, calls)) for f in (f1, f2)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        parallel.append(time.perf_counter() - t0)
    s, p = statistics.median(serial), statistics.median(parallel)
    return s, p, s / p


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_thread_scaling",
                                description=__doc__.split("\n")[0])
    p.add_argument("--repeat", type=positive_int, default=5)
    p.add_argument("--sizes", type=positive_int, nargs="+",
                   default=[10_000, 100_000, 1_000_000, 4_000_000])
    args = p.parse_args(argv)
    rng = numpy.random.default_rng(0)
    rows, results = [], {}
    for n in args.sizes:
        calls = max(4, 20_000_000 // n)  # about the same elements per timing at every size
        for name, make in _operations(n, rng).items():
            s, par, x = speedup(make, calls, args.repeat)
            per_call_us = s / (2 * calls) * 1e6
            results.setdefault(name, {})[n] = {"serial_s": s, "parallel_s": par, "speedup": x,
                                               "us_per_call": per_call_us}
            rows.append([name, n, f"{per_call_us:.1f}", f"{x:.2f}"])
    print_table("NumPy calls on two threads: speedup over one thread (2.00 = perfect)",
                ["operation", "elements", "us per call (1 thread)", "2-thread speedup"], rows)
    save_json("bench_thread_scaling", {"results": results, "repeat": args.repeat})
    return 0


if __name__ == "__main__":
    rerun_with_steady_malloc("benchmarks.bench_thread_scaling", sys.argv[1:])
    sys.exit(main())
