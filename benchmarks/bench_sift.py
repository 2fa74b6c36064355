"""SIFT timings: minifeat per stage (NumPy, and CuPy when a GPU is present) against OpenCV
(``cv2.SIFT``, one thread) and scikit-image (``skimage.feature.SIFT``) on an 800x600-class photo
and a 1920x1080 one (the same photo resized with Pillow's bicubic filter).

    python benchmarks/bench_sift.py            # table + benchmarks/results/bench_sift.json
    python benchmarks/bench_sift.py --repeat 3 --no-skimage

Each number is the median wall time after one warm-up run; minifeat and OpenCV runs alternate,
so that both see the same load on a shared machine, and the OpenCV ratio is also given as the
median of paired runs (skimage: median of ``--skimage-repeat`` runs, 3 by default).  OpenCV
runs on one thread; minifeat's BLAS calls (the GEMM blur) stay below OpenBLAS's threading
threshold and minidl.parallel is set to one thread, so it is single-threaded too.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

import numpy

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks._common import cupy_backend, print_table, save_json, timeit  # noqa: E402
from minidl import backend as B  # noqa: E402
from minifeat import SIFT  # noqa: E402

STAGES = ["scale_space", "extrema", "orientation", "descriptors", "total"]


def _images(data_dir: pathlib.Path):
    from PIL import Image

    src = Image.open(data_dir / "building.jpg").convert("L")
    big = src.resize((1920, 1080), Image.BICUBIC)
    return {f"building {src.width}x{src.height}": numpy.asarray(src, numpy.float32) / 255,
            "building 1920x1080": numpy.asarray(big, numpy.float32) / 255}


def _ours(img, backend: str):
    """A run() closure for minifeat on ``backend``; run.timings collects each run's stages."""
    b = B._get(backend)
    x = b.asarray(img)
    sift = SIFT()

    def run():
        kp, d = sift.detect_and_compute(x)
        b.synchronize()
        run.timings.append(dict(sift.timings))
        run.n = len(kp)

    run.timings = []
    return run


def _opencv(img):
    try:
        import cv2
    except ImportError:
        print("[opencv column: not available -- pip install opencv-python-headless]")
        return None
    cv2.setNumThreads(1)
    u8 = numpy.clip(img * 255 + 0.5, 0, 255).astype(numpy.uint8)
    sift = cv2.SIFT_create()

    def run():
        run.n = len(sift.detectAndCompute(u8, None)[0])

    return run


def _interleaved(runs: dict, repeat: int):
    """Median seconds of each run() after one warm-up each, the runs alternating within every
    repeat, so that all of them see the same machine load (other jobs share the cores); also
    the median over repeats of each run's time divided by the first run's."""
    for fn in runs.values():
        fn()
    times = {k: [] for k in runs}
    for _ in range(repeat):
        for k, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    first = next(iter(runs))
    ratios = {k: float(numpy.median(numpy.array(times[k]) / numpy.array(times[first])))
              for k in runs}
    return {k: float(numpy.median(v)) for k, v in times.items()}, ratios


def _skimage(img, repeat: int):
    try:
        from skimage.feature import SIFT as SkSIFT
    except ImportError:
        print("[skimage column: not available -- pip install scikit-image]")
        return None, None
    sift = SkSIFT()

    def run():
        sift.detect_and_extract(img.astype(numpy.float64))
        run.n = len(sift.keypoints)

    return timeit(run, repeat=repeat, warmup=0), run.n


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=os.environ.get("MINIDL_DATA", "../shared/data"))
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--no-skimage", action="store_true")
    p.add_argument("--skimage-repeat", type=int, default=3)
    args = p.parse_args(argv)
    from minidl import parallel
    threads = parallel.get_num_threads()
    parallel.set_num_threads(1)  # single-threaded, like OpenCV here (restored at the end)
    try:
        return _main(args)
    finally:
        parallel.set_num_threads(threads)


def _main(args) -> int:
    images = _images(pathlib.Path(args.data_dir) / "images")
    backends = ["numpy"] + (["cupy"] if cupy_backend() is not None else [])
    results = {}
    rows = []
    for name, img in images.items():
        res = {}
        runs = {f"minifeat-{be}": _ours(img, be) for be in backends}
        cv = _opencv(img)
        if cv is not None:
            runs["opencv-1thread"] = cv
        med, ratio = _interleaved(runs, args.repeat)
        for lib, fn in runs.items():
            res[lib] = {"seconds": {"total": med[lib]}, "keypoints": fn.n}
            if lib.startswith("minifeat"):
                st = fn.timings[1:]  # after the warm-up
                res[lib]["seconds"] = {k: float(numpy.median([r.get(k, 0.0) for r in st]))
                                       for k in STAGES}
                res[lib]["seconds"]["total"] = med[lib]
        t_cv = med.get("opencv-1thread")
        if not args.no_skimage:
            t_sk, n_sk = _skimage(img, args.skimage_repeat)
            res["skimage"] = {"seconds": {"total": t_sk}, "keypoints": n_sk}
        results[name] = res
        for lib, r in res.items():
            s = r["seconds"]
            rows.append([name, lib, r["keypoints"]] + [None if s.get(k) is None else s[k] * 1e3
                                                       for k in STAGES])
        ours = res["minifeat-numpy"]["seconds"]["total"]
        if t_cv:
            res["opencv_ratio"] = 1.0 / ratio["opencv-1thread"]
            print(f"{name}: minifeat-numpy / opencv = {ours / t_cv:.2f}x (ratio of medians), "
                  f"{res['opencv_ratio']:.2f}x (median of paired runs)")
        if not args.no_skimage and res["skimage"]["seconds"]["total"]:
            res["skimage_speedup"] = res["skimage"]["seconds"]["total"] / ours
            print(f"{name}: skimage / minifeat-numpy = {res['skimage_speedup']:.2f}x")
    print_table("SIFT detect_and_compute, milliseconds (median)",
                ["image", "library", "keypoints"] + [f"{s} ms" for s in STAGES], rows)
    save_json("bench_sift", {"results": results, "repeat": args.repeat})
    return 0


if __name__ == "__main__":
    sys.exit(main())
