"""SIFT timings: minifeat per stage (NumPy, and CuPy when a GPU is present) against OpenCV
(``cv2.SIFT``) with the same number of threads, and scikit-image (``skimage.feature.SIFT``), on
an 868x600 photo, the same photo at 1920x1080 (Pillow's bicubic filter) and two small images
(box_in_scene.png, butterfly.jpg), where the fixed cost per call matters.

    python -m benchmarks.bench_sift              # 1 and 2 threads; table + results/bench_sift.json
    python -m benchmarks.bench_sift --repeat 3 --no-skimage --threads 2
    python -m benchmarks.bench_sift --page-faults   # glibc's default malloc

Each number is the median wall time after one warm-up run; minifeat and OpenCV runs alternate,
so that both see the same load on a shared machine, and the OpenCV ratio is also given as the
median of paired runs (skimage: median of ``--skimage-repeat`` runs, 3 by default).  With
``--threads N`` minifeat runs on N host threads (``minidl.parallel``; its BLAS calls stay on one
thread each) and OpenCV with ``cv2.setNumThreads(N)``.  Like bench_layers the script re-runs
itself with glibc settings that keep freed memory in the process
(``benchmarks._common.STEADY_MALLOC``), for minifeat and OpenCV alike; ``--page-faults`` keeps
glibc's defaults.  The ``faults`` column is minifeat's minor page faults per call.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import resource
import sys
import time

import numpy

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks._common import (cupy_backend, positive_int, print_table,  # noqa: E402
                                rerun_with_steady_malloc, save_json, timeit)
from minidl import backend as B  # noqa: E402
from minifeat import SIFT  # noqa: E402

STAGES = ["scale_space", "extrema", "orientation", "descriptors", "total"]


def _images(data_dir: pathlib.Path, only=None):
    from PIL import Image

    src = Image.open(data_dir / "building.jpg").convert("L")
    big = src.resize((1920, 1080), Image.BICUBIC)
    out = {f"building {src.width}x{src.height}": src, "building 1920x1080": big}
    for name in ("box_in_scene.png", "butterfly.jpg"):
        im = Image.open(data_dir / name).convert("L")
        out[f"{name.split('.')[0]} {im.width}x{im.height}"] = im
    return {k: numpy.asarray(v, numpy.float32) / 255 for k, v in out.items()
            if not only or any(o in k for o in only)}


def _minflt() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _ours(img, backend: str):
    """A run() closure for minifeat on ``backend``; run.timings collects each run's stages."""
    b = B._get(backend)
    x = b.asarray(img)
    sift = SIFT()

    def run():
        f0 = _minflt()
        kp, d = sift.detect_and_compute(x)
        b.synchronize()
        run.faults.append(_minflt() - f0)
        run.timings.append(dict(sift.timings))
        run.n = len(kp)

    run.timings, run.faults = [], []
    return run


def _opencv(img, threads: int):
    try:
        import cv2
    except ImportError:
        print("[opencv column: not available -- pip install opencv-python-headless]")
        return None
    u8 = numpy.clip(img * 255 + 0.5, 0, 255).astype(numpy.uint8)
    sift = cv2.SIFT_create()

    def run():
        cv2.setNumThreads(threads)
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
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_sift",
                                description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=os.environ.get("MINIDL_DATA", "../shared/data"))
    p.add_argument("--repeat", type=positive_int, default=5)
    p.add_argument("--threads", type=positive_int, action="append",
                   help="threads for minifeat and OpenCV alike (repeatable; default 1 and 2)")
    p.add_argument("--images", nargs="+", metavar="NAME",
                   help="only the images whose name contains one of these (e.g. 1920 box)")
    p.add_argument("--no-skimage", action="store_true")
    p.add_argument("--skimage-repeat", type=positive_int, default=3)
    p.add_argument("--page-faults", action="store_true",
                   help="time with glibc's default malloc (fresh memory on every call)")
    args = p.parse_args(argv)
    from minidl import parallel
    threads = parallel.get_num_threads()
    try:
        return _main(args, parallel)
    finally:
        parallel.set_num_threads(threads)


def _main(args, parallel) -> int:
    images = _images(pathlib.Path(args.data_dir) / "images", args.images)
    backends = ["numpy"] + (["cupy"] if cupy_backend() is not None else [])
    results = {}
    rows = []
    for nt in args.threads or [1, 2]:
        parallel.set_num_threads(nt)
        for name, img in images.items():
            res = {}
            runs = {f"minifeat-{be}": _ours(img, be) for be in backends}
            cv = _opencv(img, nt)
            if cv is not None:
                runs["opencv"] = cv
            med, ratio = _interleaved(runs, args.repeat)
            for lib, fn in runs.items():
                res[lib] = {"seconds": {"total": med[lib]}, "keypoints": fn.n}
                if lib.startswith("minifeat"):
                    st = fn.timings[1:]  # after the warm-up
                    res[lib]["seconds"] = {k: float(numpy.median([r.get(k, 0.0) for r in st]))
                                           for k in STAGES}
                    res[lib]["seconds"]["total"] = med[lib]
                    res[lib]["page_faults"] = float(numpy.median(fn.faults[1:]))
            if not args.no_skimage and nt == 1:
                t_sk, n_sk = _skimage(img, args.skimage_repeat)
                res["skimage"] = {"seconds": {"total": t_sk}, "keypoints": n_sk}
            results[f"{name}, {nt} thread(s)"] = res
            for lib, r in res.items():
                s = r["seconds"]
                rows.append([name, nt, lib, r["keypoints"], r.get("page_faults")]
                            + [None if s.get(k) is None else s[k] * 1e3 for k in STAGES])
            ours = res["minifeat-numpy"]["seconds"]["total"]
            if cv is not None:
                res["opencv_ratio"] = 1.0 / ratio["opencv"]
                print(f"{name}, {nt} thread(s): minifeat-numpy / opencv = "
                      f"{ours / med['opencv']:.2f}x (ratio of medians), "
                      f"{res['opencv_ratio']:.2f}x (median of paired runs)", flush=True)
            if res.get("skimage", {}).get("seconds", {}).get("total"):
                res["skimage_speedup"] = res["skimage"]["seconds"]["total"] / ours
    print_table("SIFT detect_and_compute, milliseconds (median)",
                ["image", "threads", "library", "keypoints", "faults"]
                + [f"{s} ms" for s in STAGES], rows)
    save_json("bench_sift", {"results": results, "repeat": args.repeat,
                             "page_faults": bool(args.page_faults)})
    return 0


if __name__ == "__main__":
    rerun_with_steady_malloc("benchmarks.bench_sift", sys.argv[1:])
    sys.exit(main())
