"""Peak memory (max RSS) of one SIFT detect_and_compute on a large photo: minifeat against
OpenCV (``cv2.SIFT``), each in a fresh process, one thread each.

    python -m benchmarks.bench_sift_memory                  # 4000x3000; results/...json
    python -m benchmarks.bench_sift_memory --size 1920x1080 --old /work/main

The image is building.jpg resized with Pillow's bicubic filter, written once as a grayscale
PNG; every child reads that file itself (minifeat: ``SIFT().detect_and_compute(path)``,
OpenCV: ``cv2.imread(path, IMREAD_GRAYSCALE)`` then ``detectAndCompute``) and the parent reads
the child's peak resident set from ``os.wait4`` (what ``/usr/bin/time -v`` prints as "Maximum
resident set size").  A child that only imports and reads the image gives the baseline (the
interpreter, NumPy, OpenCV, the decoded image), subtracted for the bytes per input pixel.
``--old PATH``: also minifeat from another checkout (e.g. the code before a change).
"""
from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks._common import print_table, save_json  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]

CHILD = {
    "baseline (imports + image)": """
import numpy, cv2, minifeat
from minifeat.io import as_image
img = as_image(PATH); u8 = cv2.imread(PATH, cv2.IMREAD_GRAYSCALE)
print(img.shape)
""",
    "minifeat": """
from minidl import parallel; parallel.set_num_threads(1)
from minifeat import SIFT
import minifeat; assert minifeat.__file__.startswith(PYPATH), minifeat.__file__
kp, d = SIFT(n_features=NF).detect_and_compute(PATH)
print(len(kp))
""",
    "opencv": """
import cv2; cv2.setNumThreads(1)
img = cv2.imread(PATH, cv2.IMREAD_GRAYSCALE)
kp, d = cv2.SIFT_create(NF).detectAndCompute(img, None)
print(len(kp))
""",
}


def _peak_rss(code: str, path: str, pythonpath: str, n_features: int) -> tuple[int, str]:
    """Max RSS in bytes of ``python -c code`` (PATH bound to ``path``, NF to ``n_features``),
    and its stdout."""
    env = dict(os.environ, PYTHONPATH=pythonpath, MINIDL_NUM_THREADS="1",
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    env.pop("GLIBC_TUNABLES", None)  # glibc's defaults, as an application would run
    # cwd: the image's folder, not a checkout (``python -c`` puts the cwd first on sys.path)
    head = f"PATH, PYPATH, NF = {path!r}, {pythonpath!r}, {n_features}\n"
    proc = subprocess.Popen([sys.executable, "-c", head + code], env=env,
                            cwd=os.path.dirname(path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.stdout.read(), proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"child failed ({proc.returncode}): {err.strip()[-500:]}")
    return usage.ru_maxrss * 1024, out.strip()  # ru_maxrss is in KiB on Linux


def _size(text):
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must be WIDTHxHEIGHT, got {text!r}") from None
    if w < 16 or h < 16:
        raise argparse.ArgumentTypeError(f"--size must be at least 16x16, got {text!r}")
    return w, h


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_sift_memory",
                                description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=os.environ.get("MINIDL_DATA", "../shared/data"))
    p.add_argument("--size", type=_size, default=(4000, 3000), help="WIDTHxHEIGHT")
    p.add_argument("--old", metavar="PATH", help="also minifeat from this checkout")
    p.add_argument("--n-features", type=int, default=0,
                   help="keep the N strongest keypoints (both libraries; default 0: all)")
    args = p.parse_args(argv)
    from PIL import Image

    src = pathlib.Path(args.data_dir) / "images" / "building.jpg"
    if not src.is_file():
        print(f"error: {src} not found (set MINIDL_DATA or --data-dir)", file=sys.stderr)
        return 2
    w, h = args.size
    rows, results = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        path = str(pathlib.Path(tmp) / f"building_{w}x{h}.png")
        Image.open(src).convert("L").resize((w, h), Image.BICUBIC).save(path)
        runs = [(name, code, str(ROOT)) for name, code in CHILD.items()]
        if args.old:
            runs.append((f"minifeat ({args.old})", CHILD["minifeat"], args.old))
        base = None
        for name, code, pypath in runs:
            rss, out = _peak_rss(code, path, pypath, args.n_features)
            base = rss if base is None else base
            per_px = (rss - base) / (w * h)
            results[name] = {"peak_rss_bytes": rss, "bytes_per_pixel_over_baseline": per_px,
                             "output": out}
            rows.append([name, out, rss / 2 ** 20, per_px])
    print_table(f"SIFT peak RSS, one {w}x{h} grayscale photo, fresh process each, "
                f"n_features={args.n_features}",
                ["run", "keypoints", "peak RSS MiB", "bytes / input pixel over baseline"], rows)
    save_json("bench_sift_memory", {"size": [w, h], "n_features": args.n_features,
                                     "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
