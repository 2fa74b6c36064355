"""SIFT timings: minifeat per stage (NumPy, and CuPy when a GPU is present) against OpenCV
(``cv2.SIFT``, one thread) and scikit-image (``skimage.feature.SIFT``) on an 800x600-class photo
and a 1920x1080 one (the same photo resized with Pillow's bicubic filter).

    python benchmarks/bench_sift.py            # table + benchmarks/results/bench_sift.json
    python benchmarks/bench_sift.py --repeat 3 --no-skimage

Each number is the median wall time after one warm-up run (skimage: one timed run on the large
image, it takes tens of seconds).
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys

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


def _ours(img, backend: str, repeat: int):
    b = B._get(backend)
    x = b.asarray(img)
    sift = SIFT()
    stage_runs = []

    def run():
        kp, d = sift.detect_and_compute(x)
        stage_runs.append(dict(sift.timings))
        run.n = len(kp)

    t = timeit(run, repeat=repeat, warmup=1, sync=b.synchronize)
    stages = {k: float(numpy.median([r.get(k, 0.0) for r in stage_runs[1:]])) for k in STAGES}
    stages["total"] = t
    return stages, run.n


def _opencv(img, repeat: int):
    try:
        import cv2
    except ImportError:
        print("[opencv column: not available -- pip install opencv-python-headless]")
        return None, None
    cv2.setNumThreads(1)
    u8 = numpy.clip(img * 255 + 0.5, 0, 255).astype(numpy.uint8)
    sift = cv2.SIFT_create()

    def run():
        run.n = len(sift.detectAndCompute(u8, None)[0])

    return timeit(run, repeat=repeat, warmup=1), run.n


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
    args = p.parse_args(argv)
    images = _images(pathlib.Path(args.data_dir) / "images")
    backends = ["numpy"] + (["cupy"] if cupy_backend() is not None else [])
    results = {}
    rows = []
    for name, img in images.items():
        res = {}
        for be in backends:
            stages, n = _ours(img, be, args.repeat)
            res[f"minifeat-{be}"] = {"seconds": stages, "keypoints": n}
        t_cv, n_cv = _opencv(img, args.repeat)
        res["opencv-1thread"] = {"seconds": {"total": t_cv}, "keypoints": n_cv}
        if not args.no_skimage:
            t_sk, n_sk = _skimage(img, 1)
            res["skimage"] = {"seconds": {"total": t_sk}, "keypoints": n_sk}
        results[name] = res
        for lib, r in res.items():
            s = r["seconds"]
            rows.append([name, lib, r["keypoints"]] + [None if s.get(k) is None else s[k] * 1e3
                                                       for k in STAGES])
        ours = res["minifeat-numpy"]["seconds"]["total"]
        if t_cv:
            print(f"{name}: minifeat-numpy / opencv = {ours / t_cv:.2f}x")
        if not args.no_skimage and res["skimage"]["seconds"]["total"]:
            print(f"{name}: skimage / minifeat-numpy = "
                  f"{res['skimage']['seconds']['total'] / ours:.2f}x")
    print_table("SIFT detect_and_compute, milliseconds (median)",
                ["image", "library", "keypoints"] + [f"{s} ms" for s in STAGES], rows)
    save_json("bench_sift", {"results": results, "repeat": args.repeat})
    return 0


if __name__ == "__main__":
    sys.exit(main())
