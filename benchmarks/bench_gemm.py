"""GEMM peak of this machine: the physical limit the layers are judged by.

Square matrix products in float32 and float64 on NumPy (CPU), CuPy (GPU) when present, and
PyTorch CPU when installed, at the same thread count.

    python -m benchmarks.bench_gemm [--sizes 512 1024 2048] [--threads 2]
"""
from __future__ import annotations

import argparse

import numpy

from benchmarks._common import (cupy_backend, machine, print_table, save_json, timeit,
                                torch_or_none, use_threads)


def gemm_gflops(n: int, dtype, xp, sync=None) -> float:
    a = xp.asarray(numpy.random.default_rng(0).random((n, n)).astype(dtype))
    b = a.copy()
    seconds = timeit(lambda: a @ b, repeat=5, warmup=2, sync=sync)
    return 2 * n ** 3 / seconds / 1e9


def run(sizes=(512, 1024, 2048), threads=None) -> dict:
    torch = torch_or_none(threads)
    use_threads(threads)
    cp = cupy_backend()
    rows, results = [], []
    for dtype in ("float32", "float64"):
        for n in sizes:
            ours = gemm_gflops(n, dtype, numpy)
            gpu = gemm_gflops(n, dtype, cp.xp, cp.synchronize) if cp else None
            tt = None
            if torch is not None:
                a = torch.rand(n, n, dtype=getattr(torch, dtype))
                seconds = timeit(lambda: a @ a, repeat=5, warmup=2)
                tt = 2 * n ** 3 / seconds / 1e9
            rows.append([dtype, n, ours, gpu if gpu else "not available",
                         tt if tt else "not available"])
            results.append({"dtype": dtype, "n": n, "numpy_gflops": ours, "cupy_gflops": gpu,
                            "torch_gflops": tt})
    m = machine()
    table = print_table(f"GEMM peak (GFLOP/s, median of 5); NumPy's OpenBLAS kernels: "
                        f"{m['openblas_kernels']} (OPENBLAS_CORETYPE {m['OPENBLAS_CORETYPE']})",
                        ["dtype", "n", "numpy CPU", "cupy GPU", "torch CPU"], rows)
    peak = {dt: max(r["numpy_gflops"] for r in results if r["dtype"] == dt)
            for dt in ("float32", "float64")}
    save_json("gemm", {"results": results, "peak_gflops": peak, "table": table})
    return peak


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    p.add_argument("--threads", type=int, default=None,
                   help="NumPy's and torch's threads (default: all)")
    args = p.parse_args(argv)
    run(tuple(args.sizes), args.threads)


if __name__ == "__main__":
    main()
