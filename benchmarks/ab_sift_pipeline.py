"""A/B of SIFT against the code of another checkout, in one process: minifeat from this tree,
minifeat from ``--old`` (imported beside it as ``minifeat_old``; minidl is this tree's) and
OpenCV, in turn on the same image, per stage.

    python -m benchmarks.ab_sift_pipeline --old /work/main [--threads 1] [--repeat 9]

For a shared machine: the three run interleaved, so they see the same load; the ratios are
medians of paired runs.  Images as ``bench_sift``.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import pathlib
import sys
import time

import numpy

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks._common import print_table, rerun_with_steady_malloc, save_json  # noqa: E402
from benchmarks.bench_sift import STAGES, _images  # noqa: E402
from minidl import parallel  # noqa: E402
from minifeat import SIFT  # noqa: E402


def _old_minifeat(root: str):
    init = pathlib.Path(root) / "minifeat" / "__init__.py"
    if not init.is_file():
        raise SystemExit(f"error: --old {root!r} has no minifeat/__init__.py")
    spec = importlib.util.spec_from_file_location("minifeat_old", init,
                                                  submodule_search_locations=[str(init.parent)])
    mod = importlib.util.module_from_spec(spec)
    sys.modules["minifeat_old"] = mod
    spec.loader.exec_module(mod)
    return mod


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ab_sift_pipeline",
                                description=__doc__.split("\n")[0])
    p.add_argument("--old", required=True, metavar="PATH", help="the other checkout")
    p.add_argument("--data-dir", default=os.environ.get("MINIDL_DATA", "../shared/data"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=9)
    p.add_argument("--page-faults", action="store_true",
                   help="time with glibc's default malloc (fresh memory on every call)")
    args = p.parse_args(argv)
    if args.threads < 1 or args.repeat < 1:
        p.error("--threads and --repeat must be >= 1")
    import cv2
    old = _old_minifeat(args.old)
    parallel.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    rows, results = [], {}
    for name, img in _images(pathlib.Path(args.data_dir) / "images").items():
        u8 = numpy.clip(img * 255 + 0.5, 0, 255).astype(numpy.uint8)
        sifts = {"old": old.SIFT(), "new": SIFT()}
        cv = cv2.SIFT_create()
        runs = {"old": lambda: sifts["old"].detect_and_compute(img),
                "new": lambda: sifts["new"].detect_and_compute(img),
                "opencv": lambda: cv.detectAndCompute(u8, None)}
        for fn in runs.values():
            fn()
        t = {k: [] for k in runs}
        stages = {"old": [], "new": []}
        for _ in range(args.repeat):
            for k, fn in runs.items():
                t0 = time.perf_counter()
                fn()
                t[k].append(time.perf_counter() - t0)
            for k in stages:
                stages[k].append(dict(sifts[k].timings))
        a = {k: numpy.array(v) for k, v in t.items()}
        res = {k: {"ms": float(numpy.median(v)) * 1e3} for k, v in a.items()}
        for k in stages:
            res[k]["stages_ms"] = {s: float(numpy.median([d.get(s, 0.0) for d in stages[k]]))
                                   * 1e3 for s in STAGES[:-1]}
        res["new_over_old"] = float(numpy.median(a["new"] / a["old"]))
        res["new_over_opencv"] = float(numpy.median(a["new"] / a["opencv"]))
        results[name] = res
        for k in ("old", "new"):
            rows.append([name, k, res[k]["ms"]] + [res[k]["stages_ms"][s] for s in STAGES[:-1]])
        rows.append([name, "opencv", res["opencv"]["ms"]] + [None] * 4)
        print(f"{name}: new / old {res['new_over_old']:.2f}, new / opencv "
              f"{res['new_over_opencv']:.2f} (medians of paired runs)", flush=True)
    print_table(f"SIFT A/B, {args.threads} thread(s), median ms",
                ["image", "code", "total"] + STAGES[:-1], rows)
    save_json("ab_sift_pipeline", {"old": args.old, "threads": args.threads,
                                   "repeat": args.repeat, "results": results})
    return 0


if __name__ == "__main__":
    rerun_with_steady_malloc("benchmarks.ab_sift_pipeline", sys.argv[1:])
    sys.exit(main())
