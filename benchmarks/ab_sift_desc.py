"""A/B of SIFT's orientation and descriptor stages: this tree's minifeat against another
tree's (default /work/main), in the same process, on the exact per-layer inputs of a real SIFT
run (each layer's Gaussian image, keypoints, angles and scales).

    python -m benchmarks.ab_sift_desc [--old /work/main] [--repeat 5] [--clock cpu]

Per image and stage: median ms of each side over alternating rounds, the median ratio new/old,
and the largest difference of the outputs (orientation histograms, raw descriptors); written
to benchmarks/results/ab_sift_desc.json too.  One thread (as OpenCV's numbers in bench_sift).
Both sides build each layer's gradient maps (in the orientation stage, as SIFT does) into
reused buffers.  ``--clock cpu`` times this thread's CPU time: on a shared machine it is less
sensitive to other jobs than the wall clock (which it does not replace).
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import pathlib
import sys
import time

import numpy

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import rerun_with_steady_malloc, save_json  # noqa: E402
from minidl.workspace import Workspace  # noqa: E402


def load_tree(path, name):
    """minifeat of the tree ``path`` as the package ``name`` (its own module objects)."""
    pkg = pathlib.Path(path) / "minifeat"
    spec = importlib.util.spec_from_file_location(name, pkg / "__init__.py",
                                                  submodule_search_locations=[str(pkg)])
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def images(data):
    from PIL import Image

    src = Image.open(data / "building.jpg").convert("L")
    out = {f"building {src.width}x{src.height}": src,
           "building 1920x1080": src.resize((1920, 1080), Image.BICUBIC)}
    for n in ("box_in_scene.png", "butterfly.jpg"):
        im = Image.open(data / n).convert("L")
        out[f"{n.split('.')[0]} {im.width}x{im.height}"] = im
    return {k: numpy.asarray(v, numpy.float32) / 255 for k, v in out.items()}


def capture(mf, img):
    """Per layer: (gaussian, r, c, ori scale, x, y, angle, desc scale) of a SIFT run."""
    import minifeat.sift as S

    calls = []
    ori0, desc0 = S.orientation_histograms, S.sift_descriptors

    def ori(grad, r, c, scale, *a, **k):
        calls.append({"img": grad.image.copy(), "r": r, "c": c, "oscale": scale})
        return ori0(grad, r, c, scale, *a, **k)

    def desc(grad, x, y, angle, scale):
        for d in calls:
            if d["img"].shape == grad.image.shape and numpy.array_equal(d["img"], grad.image):
                d.update(x=x, y=y, angle=angle, dscale=scale)
                break
        else:
            raise AssertionError("descriptor layer without orientation layer")
        return desc0(grad, x, y, angle, scale)

    S.orientation_histograms, S.sift_descriptors = ori, desc
    try:
        S.SIFT().detect_and_compute(img)
    finally:
        S.orientation_histograms, S.sift_descriptors = ori0, desc0
    return [d for d in calls if "x" in d]


CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}
CLOCK = CLOCKS["wall"]


def run_side(mf, layers, spares):
    """One pass over the layers as SIFT does it; returns (t_ori, t_desc, hists, descs)."""
    o, d, f = mf.orientation, mf.descriptors, mf.filters
    ws = Workspace(per_size=1 << 10, track=True)
    ws.give(*spares)
    t_ori = t_desc = 0.0
    hists, descs = [], []
    for L in layers:
        g = f.GradientSampler(L["img"], workspace=ws)
        g.expect(o.orientation_window_samples(L["oscale"])
                 + d.descriptor_window_samples(L["dscale"]))
        t0 = CLOCK()
        h = o.orientation_histograms(g, L["r"], L["c"], L["oscale"])
        o.dominant_orientations(h)
        t1 = CLOCK()
        raw = d.sift_descriptors(g, L["x"], L["y"], L["angle"], L["dscale"])
        d.normalize_descriptors(raw)
        t2 = CLOCK()
        t_ori += t1 - t0
        t_desc += t2 - t1
        hists.append(h)
        descs.append(raw)
    spares[:] = list(ws.taken.values())
    return t_ori, t_desc, numpy.concatenate(hists), numpy.concatenate(descs)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--old", default="/work/main")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--data-dir", default=os.environ.get("MINIDL_DATA", "/work/shared/data"))
    p.add_argument("--only", default="", help="only the images whose name contains this")
    p.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                   help="cpu: this thread's CPU time (less sensitive to other jobs' load)")
    args = p.parse_args(argv)
    global CLOCK
    CLOCK = CLOCKS[args.clock]
    from minidl import parallel
    parallel.set_num_threads(1)
    import minifeat as new

    old = load_tree(args.old, "oldminifeat")
    sides = {"old": old, "new": new}
    print(f"{'image':24s} {'K':>5s} {'stage':6s} {'old ms':>8s} {'new ms':>8s} "
          f"{'new/old':>7s} {'max|diff|':>10s}")
    rows = []
    for name, img in images(pathlib.Path(args.data_dir) / "images").items():
        if args.only and args.only not in name:
            continue
        layers = capture(new, img)
        K = sum(int(L["x"].shape[0]) for L in layers)
        spares = {k: [] for k in sides}
        res = {k: run_side(m, layers, spares[k]) for k, m in sides.items()}  # warm-up
        times = {k: [] for k in sides}
        for _ in range(args.repeat):
            for k, m in sides.items():
                times[k].append(run_side(m, layers, spares[k])[:2])
        for st, i, j in (("ori", 0, 2), ("desc", 1, 3)):
            to = numpy.array([t[i] for t in times["old"]])
            tn = numpy.array([t[i] for t in times["new"]])
            a, b = res["old"][j], res["new"][j]
            diff = float(numpy.abs(a - b).max()) if a.shape == b.shape else float("nan")
            print(f"{name:24s} {K:5d} {st:6s} {numpy.median(to) * 1e3:8.1f} "
                  f"{numpy.median(tn) * 1e3:8.1f} {numpy.median(tn / to):7.3f} {diff:10.3g}")
            rows.append({"image": name, "descriptors": K, "stage": st,
                         "old_ms": float(numpy.median(to) * 1e3),
                         "new_ms": float(numpy.median(tn) * 1e3),
                         "ratio": float(numpy.median(tn / to)), "max_abs_diff": diff})
    save_json("ab_sift_desc", {"old": str(args.old), "clock": args.clock,
                               "repeat": args.repeat, "rows": rows})


if __name__ == "__main__":
    rerun_with_steady_malloc("benchmarks.ab_sift_desc", sys.argv[1:])
    main()
