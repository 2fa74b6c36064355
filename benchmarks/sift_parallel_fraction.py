"""How much of a SIFT call the host threads can share: the fraction ``p`` of its wall time
(one thread) spent inside ``minidl.parallel.parallel_for`` calls that split with two threads, per
splitting site, and Amdahl's bound ``1 / ((1 - p) + p / 2)`` on the two-thread speedup.

    python -m benchmarks.sift_parallel_fraction [--repeat 5]

Measured at one thread, so it holds on a loaded machine where a two-thread timing does not
(the second core may be busy with someone else's work); the bound is what a second idle core
can give at most.  Images as ``bench_sift``.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

import numpy

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks._common import print_table, rerun_with_steady_malloc, save_json  # noqa: E402
from benchmarks.bench_sift import _images  # noqa: E402
from minidl import parallel  # noqa: E402
from minifeat import SIFT  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.sift_parallel_fraction",
                                description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=os.environ.get("MINIDL_DATA", "../shared/data"))
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--page-faults", action="store_true",
                   help="time with glibc's default malloc (fresh memory on every call)")
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error(f"--repeat must be >= 1, got {args.repeat}")
    threads = parallel.get_num_threads()
    real = parallel.parallel_for
    spent: dict = {}

    def timed(n, work, *, nbytes=0, like=None):
        if n < 2 or nbytes < parallel.MIN_BYTES:  # would run in one piece with 2 threads too
            return real(n, work, nbytes=nbytes, like=like)
        t0 = time.perf_counter()
        real(n, work, nbytes=nbytes, like=like)
        site = work.__qualname__.split(".")[0]
        spent[site] = spent.get(site, 0.0) + time.perf_counter() - t0

    parallel.set_num_threads(1)
    parallel.parallel_for = timed
    rows, results = [], {}
    try:
        for name, img in _images(pathlib.Path(args.data_dir) / "images").items():
            sift = SIFT()
            sift.detect_and_compute(img)
            runs = []
            for _ in range(args.repeat):
                spent.clear()
                t0 = time.perf_counter()
                sift.detect_and_compute(img)
                total = time.perf_counter() - t0
                runs.append({k: v / total for k, v in spent.items()})
            sites = sorted({k for r in runs for k in r})
            frac = float(numpy.median([sum(r.values()) for r in runs]))
            by_site = {k: float(numpy.median([r.get(k, 0.0) for r in runs])) for k in sites}
            bound = 1.0 / ((1.0 - frac) + frac / 2.0)
            results[name] = {"parallel_fraction": frac, "by_site": by_site,
                             "two_thread_bound": bound}
            rows.append([name, f"{frac:.2f}", f"{bound:.2f}", ", ".join(f"{k} {v:.2f}" for k, v in
                                                      by_site.items())])
    finally:
        parallel.parallel_for = real
        parallel.set_num_threads(threads)
    print_table("SIFT: wall-time fraction in splitting parallel_for calls (1 thread)",
                ["image", "p", "2-thread bound x", "by site"], rows)
    save_json("sift_parallel_fraction", {"results": results, "repeat": args.repeat})
    return 0


if __name__ == "__main__":
    rerun_with_steady_malloc("benchmarks.sift_parallel_fraction", sys.argv[1:])
    sys.exit(main())
