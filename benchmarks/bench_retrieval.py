"""Image retrieval with SIFT visual words: how often a photo's own warped copies come first.

The set: each photo of ``$MINIDL_DATA/images`` (shrunk to ``--max-size``) and ``--warps``
copies of it under a random homography (rotation up to 30 degrees, scale 0.7..1.3, a little
perspective), a random crop (75..95% of each side) and a lighting change (gain 0.6..1.4,
gamma 0.7..1.4, offset), all mixed together.  Every image queries all the others with
:class:`minifeat.retrieval.InvertedIndex` (tf-idf cosine over a vocabulary learnt on the set);
the relevant answers are the other images of the same photo.  Reported: mean average precision
(mAP, over the whole ranking) and recall at 5, without and with spatial verification (the top
``--verify`` candidates re-ranked by RANSAC inliers).

    python benchmarks/bench_retrieval.py     # table + benchmarks/results/bench_retrieval.json
"""
from __future__ import annotations

import argparse
import math
import os
import pathlib
import sys
import time

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks._common import print_table, save_json  # noqa: E402

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# photos of the same scene in $MINIDL_DATA/images: a stereo pair of one chessboard, and a box
# that is also in a cluttered scene -- spatial verification rightly finds these
SAME_SCENE = (("left01.jpg", "right01.jpg"), ("box.png", "box_in_scene.png"))


def random_homography(rng, w: int, h: int):
    """A homography (3, 3) of a w x h image about its centre: rotation, scale, perspective."""
    t = math.radians(rng.uniform(-30, 30))
    s = rng.uniform(0.7, 1.3)
    c, n = math.cos(t), math.sin(t)
    A = np.array([[s * c, -s * n, 0], [s * n, s * c, 0],
                  [rng.uniform(-4e-4, 4e-4) * 240 / max(w, h),
                   rng.uniform(-4e-4, 4e-4) * 240 / max(w, h), 1.0]])
    to_centre = np.array([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1.0]])
    return np.linalg.inv(to_centre) @ A @ to_centre


def warp(image, rng):
    """One random copy of a uint8 grey image (h, w): homography, crop, lighting."""
    from PIL import Image
    h, w = image.shape
    H = random_homography(rng, w, h)
    cw, ch = int(w * rng.uniform(0.75, 0.95)), int(h * rng.uniform(0.75, 0.95))
    x0, y0 = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
    H = np.array([[1, 0, -x0], [0, 1, -y0], [0, 0, 1.0]]) @ H   # then crop the window
    inv = np.linalg.inv(H)
    inv /= inv[2, 2]                                  # PIL maps output pixels to input ones
    out = Image.fromarray(image).transform((cw, ch), Image.Transform.PERSPECTIVE,
                                           tuple(inv.ravel()[:8]), Image.Resampling.BILINEAR)
    a = np.asarray(out, np.float64) / 255
    a = np.clip(rng.uniform(0.6, 1.4) * a ** rng.uniform(0.7, 1.4) + rng.uniform(-0.1, 0.1),
                0, 1)
    return np.rint(a * 255).astype(np.uint8)


def load_grey(path, max_size: int):
    """The photo as uint8 grey (h, w), its longer side at most ``max_size``."""
    from PIL import Image, ImageOps
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert("L")
        f = min(1.0, max_size / max(im.size))
        if f < 1:
            im = im.resize((max(1, round(im.width * f)), max(1, round(im.height * f))),
                           Image.Resampling.LANCZOS)
        return np.asarray(im)


def warped_set(images_dir, n_warps: int = 4, max_size: int = 240, seed: int = 0,
               limit: int | None = None, names: list | None = None):
    """``(images, labels)``: uint8 grey arrays, each photo then its ``n_warps`` copies; the
    label is the photo's index (its file name is appended to ``names`` when given)."""
    rng = np.random.default_rng(seed)
    paths = sorted(p for p in pathlib.Path(images_dir).iterdir()
                   if p.suffix.lower() in EXTENSIONS)[:limit]
    images, labels = [], []
    for k, path in enumerate(paths):
        base = load_grey(path, max_size)
        images += [base] + [warp(base, rng) for _ in range(n_warps)]
        labels += [k] * (n_warps + 1)
        if names is not None:
            names.append(path.name)
    return images, np.asarray(labels)


def scene_labels(labels, names):
    """The labels with the photos of :data:`SAME_SCENE` merged (one label per scene)."""
    scene = np.arange(len(names))
    for a, b in SAME_SCENE:
        if a in names and b in names:
            scene[names.index(b)] = scene[names.index(a)]
    return scene[labels]


def features(images, n_features: int = 600):
    """SIFT keypoint positions (n, 2) and descriptors (n, 128) of each image (host)."""
    from minifeat import SIFT
    sift = SIFT(n_features=n_features)
    out = []
    for im in images:
        kp, desc = sift.detect_and_compute(im.astype(np.float32) / 255)
        out.append((np.stack([np.asarray(kp.x), np.asarray(kp.y)], axis=1), np.asarray(desc)))
    return out


def evaluate(images, labels, vocab_size: int = 500, verify: int = 10, k: int = 5,
             seed: int = 0, scenes=None, threshold: float = 8.0,
             min_inliers: int = 12) -> dict:
    """mAP and recall@k of every image querying all the others, plain and verified: relevant
    = same photo (``labels``); with ``scenes`` (labels per image) also the same with the
    other photos of the query's scene left out of its ranking (the "junk" of the Oxford
    Buildings protocol, Philbin et al. 2007), under ``result["scene"]``."""
    from minifeat import BagOfWords
    from minifeat.retrieval import InvertedIndex, average_precision, recall_at_k
    t0 = time.perf_counter()
    feats = features(images)
    t_sift = time.perf_counter() - t0
    all_desc = np.concatenate([d for _, d in feats])
    vocab = BagOfWords(min(vocab_size, len(all_desc)), seed=seed, max_iter=10) \
        .fit_vocabulary(all_desc).vocabulary_
    index = InvertedIndex(vocab)
    words = []
    for i, (xy, desc) in enumerate(feats):
        words.append(index.words(desc))
        index.add_words(words[-1], xy, name=str(i))
    t_index = time.perf_counter() - t0 - t_sift
    result = {"scene": {}} if scenes is not None else {}
    for mode, v in (("plain", 0), ("verified", verify)):
        t1 = time.perf_counter()
        ranks = [[d for d, _, _ in index.query_words(words[i], feats[i][0],
                                                        top_k=len(images), verify=v,
                                                        threshold=threshold,
                                                        min_inliers=min_inliers,
                                                        exclude=[i])]
                 for i in range(len(images))]
        ms = 1000 * (time.perf_counter() - t1) / len(images)
        for where, junk in ((result, None), (result.get("scene"), scenes)):
            if where is None:
                continue
            aps, recalls = [], []
            for i, r in enumerate(ranks):
                r = np.asarray(r)
                if junk is not None:   # the other photos of the same scene: neither right
                    r = r[(junk[r] != junk[i]) | (labels[r] == labels[i])]    # nor wrong
                rel = labels[r] == labels[i]
                aps.append(average_precision(rel))
                recalls.append(recall_at_k(rel, k, int((labels == labels[i]).sum()) - 1))
            where[mode] = {"mAP": float(np.mean(aps)), f"recall@{k}": float(np.mean(recalls)),
                           "ms_per_query": ms}
    result.update(images=len(images), photos=int(labels.max()) + 1,
                  descriptors=int(len(all_desc)), vocab_size=int(vocab.shape[0]),
                  sift_s=t_sift, index_s=t_index, verify=verify, k=k)
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", default=os.environ.get("MINIDL_DATA", "../shared/data"))
    p.add_argument("--warps", type=int, default=4, help="warped copies of each photo")
    p.add_argument("--max-size", type=int, default=240, help="longer side of the photos")
    p.add_argument("--vocab", type=int, default=500, help="visual words")
    p.add_argument("--verify", type=int, default=10, help="candidates re-ranked by RANSAC")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    images_dir = pathlib.Path(args.data_dir) / "images"
    if not images_dir.is_dir():
        sys.exit(f"error: no images/ folder under {args.data_dir!r} (set --data-dir or "
                 "MINIDL_DATA)")
    names = []
    images, labels = warped_set(images_dir, args.warps, args.max_size, args.seed, names=names)
    r = evaluate(images, labels, args.vocab, args.verify, seed=args.seed,
                 scenes=scene_labels(labels, names))
    print(f"{r['photos']} photos x {args.warps + 1} versions = {r['images']} images of at most "
          f"{args.max_size} px; {r['descriptors']} SIFT descriptors, {r['vocab_size']} words "
          f"(SIFT {r['sift_s']:.1f} s, vocabulary + index {r['index_s']:.1f} s)")
    rows = []
    for relevant, res in (("all", r), ("scene junk out", r["scene"])):
        for mode in ("plain", "verified"):
            rows.append([relevant, "tf-idf" if mode == "plain" else
                         f"+ RANSAC on top {args.verify}", f"{res[mode]['mAP']:.3f}",
                         f"{res[mode]['recall@5']:.3f}", f"{res[mode]['ms_per_query']:.1f}"])
    print_table("retrieval of each image's other versions", ["ranked", "ranking", "mAP",
                                                              "recall@5", "ms/query"], rows)
    print("scene junk out: the other photo of the same scene (" + ", ".join(
        " / ".join(p) for p in SAME_SCENE) + ") is left out of the query's ranking: a true "
          "match of another photo, neither right nor wrong")
    save_json("bench_retrieval", {"args": vars(args), "results": r})
    return 0


if __name__ == "__main__":
    sys.exit(main())
