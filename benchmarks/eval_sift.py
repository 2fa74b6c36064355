"""Matching quality of SIFT implementations on photos warped by known homographies.

Each natural photo of ``$MINIDL_DATA/images`` (grey, shrunk to at most ``--max-size`` pixels a
side, 8-bit) is warped onto a canvas of its own size by homographies about its centre, in five
groups (fixed parameters, fixed noise seed):

* rotation -- 15, 45, 90 degrees
* scale -- 0.5, 0.7 (anti-aliased first), 1.5, 2 (zoom in: the centre of the photo)
* noise -- Gaussian noise sigma 0.02 (no warp) and 0.05 (with a 10 degree rotation)
* perspective -- a mild tilt (top edge 10% shorter each side) and a rotation 30 + scale 0.7
* viewpoint -- the strongest changes: tilts of the top edge by 30% and 35% each side (about 55
  and 60 degrees out of plane for a camera with a focal length of one image width) and a yaw
  (right edge 30% shorter), each with 1-3 % noise of the warp's own interpolation only

The warped image is re-quantised to 8 bits, and every method sees the same pixels.  For each
method, photo and warp (image 1 = photo, image 2 = warp, ``H`` maps 1 to 2):

* positions are taken on the pixel-centre grid (``xy - 0.25``: all three implementations
  report positions 0.25 px right/below, the shift of their 2x upsampled pyramid; see
  :mod:`minifeat.keypoints`); a match ``(p1, p2)`` is **correct** when ``|H p1 - p2| <= 3`` px;
* **matches**: the matching rule on the descriptors (Euclidean; all descriptors L2-normalised
  floats): ``ratio`` = Lowe's ratio test at 0.8 (nearest < 0.8 second nearest, what the issue
  measured), ``ratio+cross`` = that and mutual nearest neighbours;
* **precision** = correct / matches (0 when there are no matches);
* **repeatability** (position and scale, one to one; "point repeatability" of Schmid et al.
  with a scale test in the spirit of Mikolajczyk et al. 2005): keypoints are taken once per
  (position, scale) (a keypoint with two orientations counts once), only those in the overlap
  (``H p1`` inside image 2, ``H^-1 p2`` inside image 1).  A pair corresponds when
  ``|H p1 - p2| <= 3`` px and ``sigma2 / (sigma1 s_H(p1))`` is within ``[1/sqrt 2, sqrt 2]``
  (``s_H`` = sqrt |det| of H's Jacobian at p1: the local scale of the warp); pairs are
  assigned greedily by distance, each keypoint at most once; repeatability =
  corresponding pairs / min(overlap keypoints of image 1, of image 2).  ``rep.(xy)``: the
  same without the scale test (position only).

Reported per method: means of precision and repeatability over all cases and per group, the
total number of correct matches over all cases and over the viewpoint group, and the
mean keypoints per image.  The real pair box.png / box_in_scene.png has no ground truth and is
not used.  Methods: ``minifeat`` (``SIFT()``: OpenCV-compatible defaults), ``accurate``
(``SIFT(preset="accurate")``), ``opencv`` (``cv2.SIFT_create()``), ``skimage``
(``skimage.feature.SIFT()``), and ``custom:k=v,k=v`` (any SIFT keywords, for exploring).

    nice -n 15 python benchmarks/eval_sift.py            # table + results/eval_sift.json
    python benchmarks/eval_sift.py --quick               # 1 photo, 3 warps, 256 px (seconds)
    python benchmarks/eval_sift.py --methods minifeat,custom:n_intervals=4 --no-save
"""
from __future__ import annotations

import argparse
import math
import os
import pathlib
import sys
import time

import numpy as np
import scipy.ndimage
import scipy.spatial

if __package__ in (None, ""):
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks._common import print_table, save_json  # noqa: E402

PHOTOS = ("baboon.jpg", "building.jpg", "butterfly.jpg", "fruits.jpg", "home.jpg",
          "squirrel_cls.jpg", "box_in_scene.png", "sudoku.png")
TOL = 3.0           # px: correct match / corresponding keypoints
SCALE_TOL = math.sqrt(2.0)
SHIFT = 0.25        # px: the upsampled pyramid's position shift (all three methods)
RULES = {"ratio": dict(ratio=0.8), "ratio+cross": dict(ratio=0.8, cross_check=True)}
GROUPS = ("rotation", "scale", "noise", "perspective", "viewpoint")


# ------------------------------------------------------------------ warps
def _about_centre(A, w, h):
    """The 3x3 map ``A`` (about the origin) applied about the image centre."""
    c = np.array([[1, 0, (w - 1) / 2], [0, 1, (h - 1) / 2], [0, 0, 1.0]])
    return c @ A @ np.linalg.inv(c)


def _rot_scale(deg, s, w, h):
    t = math.radians(deg)
    A = np.array([[s * math.cos(t), -s * math.sin(t), 0], [s * math.sin(t), s * math.cos(t), 0],
                  [0, 0, 1.0]])
    return _about_centre(A, w, h)


def _from_corners(dst, w, h):
    """The homography taking the image's corners to ``dst`` (4, 2) (direct linear transform)."""
    src = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float64)
    rows = []
    for (x, y), (u, v) in zip(src, dst):
        rows.append([-x, -y, -1, 0, 0, 0, u * x, u * y, u])
        rows.append([0, 0, 0, -x, -y, -1, v * x, v * y, v])
    H = np.linalg.svd(np.array(rows))[2][-1].reshape(3, 3)
    return H / H[2, 2]


def _tilt(top, w, h, drop=0.0):
    """Top edge ``top`` of the width shorter on each side (and ``drop`` of the height lower)."""
    return _from_corners(np.array([[top * (w - 1), drop * h], [(1 - top) * (w - 1), drop * h],
                                   [w - 1, h - 1], [0, h - 1]]), w, h)


def _yaw(right, w, h):
    """Right edge ``right`` of the height shorter at top and bottom."""
    return _from_corners(np.array([[0, 0], [w - 1, right * h], [w - 1, (1 - right) * (h - 1)],
                                   [0, h - 1]]), w, h)


def warps(w, h):
    """``[(name, group, H, noise sigma)]`` for a w x h photo."""
    return [
        ("rot15", "rotation", _rot_scale(15, 1, w, h), 0.0),
        ("rot45", "rotation", _rot_scale(45, 1, w, h), 0.0),
        ("rot90", "rotation", _rot_scale(90, 1, w, h), 0.0),
        ("scale0.5", "scale", _rot_scale(0, 0.5, w, h), 0.0),
        ("scale0.7", "scale", _rot_scale(0, 0.7, w, h), 0.0),
        ("scale1.5", "scale", _rot_scale(0, 1.5, w, h), 0.0),
        ("scale2", "scale", _rot_scale(0, 2.0, w, h), 0.0),
        ("noise0.02", "noise", np.eye(3), 0.02),
        ("rot10+noise0.05", "noise", _rot_scale(10, 1, w, h), 0.05),
        ("tilt0.1", "perspective", _tilt(0.10, w, h, 0.05), 0.0),
        ("rot30+scale0.7", "perspective", _rot_scale(30, 0.7, w, h), 0.0),
        ("tilt0.3", "viewpoint", _tilt(0.30, w, h, 0.10), 0.0),
        ("tilt0.35", "viewpoint", _tilt(0.35, w, h, 0.15), 0.0),
        ("yaw0.3", "viewpoint", _yaw(0.30, w, h), 0.0),
    ]


QUICK_WARPS = ("rot45", "scale0.7", "tilt0.3")


def local_scale(H, pts):
    """sqrt |det J| of the homography at points (N, 2): how much it scales areas there."""
    x, y = pts[:, 0], pts[:, 1]
    w = H[2, 0] * x + H[2, 1] * y + H[2, 2]
    return np.sqrt(np.abs(np.linalg.det(H)) / np.abs(w) ** 3)


def apply_warp(img, H, noise, rng):
    """``out(q) = img(H^-1 q)`` on a canvas of img's size, bilinear, black outside; smoothed
    first where H shrinks (anti-aliasing), plus Gaussian noise; 8-bit like a camera's."""
    h, w = img.shape
    s = float(local_scale(H, np.array([[(w - 1) / 2, (h - 1) / 2]]))[0])
    src = scipy.ndimage.gaussian_filter(img, 0.5 * math.sqrt(1 / s ** 2 - 1)) if s < 0.95 \
        else img
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    p = np.linalg.inv(H) @ np.stack([xx.ravel(), yy.ravel(), np.ones(h * w)])
    out = scipy.ndimage.map_coordinates(src, [p[1] / p[2], p[0] / p[2]], order=1,
                                        mode="constant", cval=0.0).reshape(h, w)
    if noise:
        out = out + rng.normal(0, noise, out.shape)
    return np.round(np.clip(out, 0, 1) * 255) / 255


def load_photo(path, max_size):
    from PIL import Image

    im = Image.open(path).convert("L")
    f = max_size / max(im.size)
    if f < 1:
        im = im.resize((round(im.width * f), round(im.height * f)), Image.LANCZOS)
    return np.asarray(im, np.float64) / 255.0


# ------------------------------------------------------------------ methods
def _unit(d):
    d = np.asarray(d, np.float32)
    return d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)


def make_method(name):
    """A function img (H, W) float64 in [0, 1] -> (xy (N, 2) pixel-centre grid, sigma (N,),
    descriptors (N, D) float32 of unit norm)."""
    if name == "opencv":
        import cv2
        sift = cv2.SIFT_create()

        def run(img):
            k, d = sift.detectAndCompute(np.round(img * 255).astype(np.uint8), None)
            xy = np.array([p.pt for p in k], np.float64).reshape(-1, 2) - SHIFT
            return xy, np.array([p.size / 2 for p in k]), _unit(np.zeros((0, 128)) if d is None
                                                                  else d)
        return run
    if name == "skimage":
        from skimage.feature import SIFT as SkSIFT

        def run(img):
            s = SkSIFT()
            try:
                s.detect_and_extract(img)
            except RuntimeError:  # skimage raises when it finds nothing
                return np.zeros((0, 2)), np.zeros(0), np.zeros((0, 128), np.float32)
            return (s.positions[:, ::-1].astype(np.float64) - SHIFT, s.sigmas.astype(np.float64),
                    _unit(s.descriptors))
        return run
    from minifeat import SIFT

    if name == "minifeat":
        sift = SIFT()
    elif name == "accurate":
        sift = SIFT(preset="accurate")
    elif name.startswith("custom:"):
        sift = SIFT(**parse_options(name[len("custom:"):]))
    else:
        raise ValueError(f"unknown method {name!r}: expected minifeat, accurate, opencv, "
                         "skimage or custom:k=v,...")
    shift = SHIFT if sift.upsample else 0.0

    def run(img):
        kp, d = sift.detect_and_compute(img.astype(np.float32))
        return kp.centred(shift), np.asarray(kp.sigma, np.float64), _unit(d)
    return run


def parse_options(text):
    out = {}
    for item in filter(None, text.split(",")):
        k, _, v = item.partition("=")
        for conv in (int, float):
            try:
                out[k] = conv(v)
                break
            except ValueError:
                continue
        else:
            out[k] = {"True": True, "False": False}.get(v, v)
    return out


# ------------------------------------------------------------------ metrics
def _inside(p, w, h):
    return (p[:, 0] >= 0) & (p[:, 0] <= w - 1) & (p[:, 1] >= 0) & (p[:, 1] <= h - 1)


def _project(H, p):
    q = p @ H[:, :2].T + H[:, 2]
    return q[:, :2] / q[:, 2:3]


def repeatability(H, f1, f2, shape1, shape2, scale_test=True):
    """Corresponding keypoints / min(overlap keypoints of image 1, of image 2); the module's
    docstring has the rules.  ``scale_test=False``: by position only."""
    (xy1, s1), (xy2, s2) = (_unique(*f[:2]) for f in (f1, f2))
    (h1, w1), (h2, w2) = shape1, shape2
    q1 = _project(H, xy1)
    in1 = _inside(q1, w2, h2)
    in2 = _inside(_project(np.linalg.inv(H), xy2), w1, h1)
    n = min(int(in1.sum()), int(in2.sum()))
    if n == 0:
        return 0.0
    q1, sc1 = q1[in1], s1[in1] * local_scale(H, xy1[in1])
    p2, sc2 = xy2[in2], s2[in2]
    pairs = scipy.spatial.cKDTree(q1).sparse_distance_matrix(
        scipy.spatial.cKDTree(p2), TOL, output_type="ndarray")
    i, j, d = pairs["i"], pairs["j"], pairs["v"]
    r = sc2[j] / sc1[i]
    ok = (r <= SCALE_TOL) & (r >= 1 / SCALE_TOL) if scale_test else np.ones(r.shape, bool)
    i, j, d = i[ok], j[ok], d[ok]
    used1, used2, count = set(), set(), 0
    for k in np.argsort(d, kind="stable"):
        if i[k] not in used1 and j[k] not in used2:
            used1.add(i[k])
            used2.add(j[k])
            count += 1
    return count / n


def _unique(xy, sigma):
    key = np.round(np.c_[xy, sigma] * 1000).astype(np.int64)
    _, first = np.unique(key, axis=0, return_index=True)
    first = np.sort(first)
    return xy[first], sigma[first]


def match_scores(H, f1, f2):
    from minifeat.matching import match_descriptors

    out = {}
    for rule, kw in RULES.items():
        m, _ = match_descriptors(f1[2], f2[2], **kw)
        m = np.asarray(m)
        err = np.linalg.norm(_project(H, f1[0][m[:, 0]]) - f2[0][m[:, 1]], axis=1)
        correct = int((err <= TOL).sum())
        out[rule] = {"matches": int(len(m)), "correct": correct,
                     "precision": correct / len(m) if len(m) else 0.0}
    return out


# ------------------------------------------------------------------ driver
def evaluate(images_dir, methods, *, max_size=512, photos=PHOTOS, warp_names=None, seed=0,
             log=print):
    """Per-case records: dicts with photo, warp, group, method, n1, n2, repeatability and
    per-rule matches/correct/precision; and the seconds per image of each method."""
    runners = {m: make_method(m) for m in methods}
    records, seconds = [], {m: [] for m in methods}
    for photo in photos:
        path = pathlib.Path(images_dir) / photo
        if not path.exists():
            log(f"[skipped {photo}: not in {images_dir}]")
            continue
        img = load_photo(path, max_size)
        h, w = img.shape
        rng = np.random.default_rng(seed)
        cases = [(n, g, H, apply_warp(img, H, s, rng)) for n, g, H, s in warps(w, h)
                 if warp_names is None or n in warp_names]
        for m, run in runners.items():
            t0 = time.perf_counter()
            f1 = run(img)
            seconds[m].append(time.perf_counter() - t0)
            for name, group, H, img2 in cases:
                t0 = time.perf_counter()
                f2 = run(img2)
                seconds[m].append(time.perf_counter() - t0)
                rec = {"photo": photo, "warp": name, "group": group, "method": m,
                       "n1": len(f1[0]), "n2": len(f2[0]),
                       "repeatability": repeatability(H, f1, f2, img.shape, img2.shape),
                       "repeatability_xy": repeatability(H, f1, f2, img.shape, img2.shape,
                                                         scale_test=False)}
                rec.update(match_scores(H, f1, f2))
                records.append(rec)
        log(f"  {photo} ({w}x{h}): {len(cases)} warps x {len(runners)} methods done")
    return records, {m: float(np.mean(s)) if s else None for m, s in seconds.items()}


def summarise(records, methods):
    """Per method: overall and per-group means, correct-match totals."""
    out = {}
    for m in methods:
        rs = [r for r in records if r["method"] == m]
        if not rs:
            continue
        s = {"cases": len(rs), "keypoints": float(np.mean([r["n2"] for r in rs])),
             "repeatability": float(np.mean([r["repeatability"] for r in rs])),
             "repeatability_xy": float(np.mean([r["repeatability_xy"] for r in rs]))}
        for rule in RULES:
            s[rule] = {"precision": float(np.mean([r[rule]["precision"] for r in rs])),
                       "correct": int(sum(r[rule]["correct"] for r in rs)),
                       "matches": int(sum(r[rule]["matches"] for r in rs))}
        s["groups"] = {}
        for g in GROUPS:
            gr = [r for r in rs if r["group"] == g]
            if gr:
                s["groups"][g] = {
                    "repeatability": float(np.mean([r["repeatability"] for r in gr])),
                    **{rule: {"precision": float(np.mean([r[rule]["precision"] for r in gr])),
                              "correct": int(sum(r[rule]["correct"] for r in gr))}
                       for rule in RULES}}
        out[m] = s
    return out


def print_summary(summary, seconds):
    rows = []
    for m, s in summary.items():
        vp = s["groups"].get("viewpoint", {})
        rows.append([m, s["keypoints"], s["ratio"]["precision"], s["repeatability"],
                     s["repeatability_xy"],
                     s["ratio"]["correct"], vp.get("ratio", {}).get("correct", "n/a"),
                     s["ratio+cross"]["precision"], s["ratio+cross"]["correct"],
                     vp.get("ratio+cross", {}).get("correct", "n/a"), seconds.get(m)])
    cols = ["method", "kp/img", "precision", "repeat.", "rep.(xy)", "correct", "correct(viewp.)",
            "prec(+cross)", "correct(+cross)", "viewp.(+cross)", "s/img"]
    text = print_table("All cases (ratio 0.8; +cross: and mutual nearest neighbours)", cols,
                       [[r[0]] + [_f(v) for v in r[1:]] for r in rows])
    grows = []
    for g in GROUPS:
        row = [g]
        for m, s in summary.items():
            gs = s["groups"].get(g)
            row += ["n/a"] * 3 if gs is None else [
                f"{gs['ratio']['precision']:.3f}", f"{gs['repeatability']:.3f}",
                str(gs["ratio"]["correct"])]
        grows.append(row)
    cols = ["group"] + [f"{m} {c}" for m in summary for c in ("prec", "rep", "corr")]
    text += "\n" + print_table("Per group (ratio 0.8)", cols, grows)
    return text


def _f(v):
    if isinstance(v, float):
        return f"{v:.3f}" if v < 10 else f"{v:.0f}"
    return v


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--methods", default="minifeat,accurate,opencv,skimage",
                   help="comma-separated: minifeat, accurate, opencv, skimage, custom:k=v;k=v "
                        "(';' separates a custom method's options); default %(default)s")
    p.add_argument("--max-size", type=int, default=512, help="longest side (default 512)")
    p.add_argument("--photos", default=",".join(PHOTOS), help="comma-separated file names")
    p.add_argument("--quick", action="store_true",
                   help="1 photo, 3 warps, 256 px: a smoke run of seconds")
    p.add_argument("--images", default=None, help="folder (default $MINIDL_DATA/images)")
    p.add_argument("--json", default="eval_sift", help="results/<name>.json (default %(default)s)")
    p.add_argument("--no-save", action="store_true", help="print only")
    a = p.parse_args(argv)
    images = a.images or (os.path.join(os.environ["MINIDL_DATA"], "images")
                          if os.environ.get("MINIDL_DATA") else None)
    if images is None or not os.path.isdir(images):
        p.error(f"no images folder: set MINIDL_DATA or pass --images (got {images!r})")
    methods = [m.replace(";", ",") for m in a.methods.split(",") if m]
    photos, warp_names, max_size = a.photos.split(","), None, a.max_size
    if a.quick:
        photos, warp_names, max_size = photos[:1], QUICK_WARPS, min(max_size, 256)
    missing = []
    for m in list(methods):
        try:
            make_method(m)
        except ImportError as exc:
            missing.append(f"{m} ({exc.name} not installed)")
            methods.remove(m)
    if missing:
        print("[not measured: " + ", ".join(missing) + "]")
    records, seconds = evaluate(images, methods, max_size=max_size, photos=photos,
                                warp_names=warp_names)
    summary = summarise(records, methods)
    text = print_summary(summary, seconds)
    if not a.no_save:
        save_json(a.json, {"argv": sys.argv[1:], "max_size": max_size, "photos": photos,
                           "tolerance_px": TOL, "scale_tolerance": SCALE_TOL,
                           "rules": RULES, "seconds_per_image": seconds, "summary": summary,
                           "table": text, "records": records})
    return 0


if __name__ == "__main__":
    sys.exit(main())
