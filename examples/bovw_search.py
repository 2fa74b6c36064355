"""Find the photos of the same thing: image search with visual words (Sivic & Zisserman 2003,
"Video Google"), like a text search engine over "visual words".

1. **Features**: SIFT finds a few hundred keypoints per photo, each described by 128 numbers.
2. **Vocabulary**: k-means groups all the descriptors of the collection into K clusters, the
   *visual words*; a descriptor is then just the number of its nearest word, and a photo a
   bag of words.
3. **Inverted index**: for each word, the list of photos that contain it and how much
   (tf-idf: words frequent in a photo but rare in the collection weigh most).  A query's
   score for a photo is the cosine of their tf-idf vectors, computed by walking only the
   lists of the query's own words -- as a search engine does with the words of a question.
4. **Spatial verification** (``--verify N``, Philbin et al. 2007): words say nothing about
   *where* the features are.  For the N best photos, the features sharing a word with the
   query are paired, and RANSAC looks for one homography that most pairs agree with; photos
   of the same scene have many such inliers, look-alikes few.  They are re-ranked by inliers.

The index is built once and saved (``--index``; plain arrays in an ``.npz``, no pickle), then
reused for every query as long as the folder's photos are the same.

    python examples/bovw_search.py PHOTOS/ query.jpg --verify 10
    python examples/bovw_search.py PHOTOS/ another.jpg          # reuses runs/.../index.npz

Writes ``--out`` (default runs/bovw_search/results.png): the query and its best hits with
their rank, score and inliers, and ``matches.png``, the inlier pairs of the best verified hit.
"""
from __future__ import annotations

import pathlib
import sys
import time

import numpy as np
from PIL import Image, ImageDraw, ImageOps

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from minifeat import SIFT, BagOfWords  # noqa: E402
from minifeat.retrieval import InvertedIndex  # noqa: E402

from _cli import Parser, nonnegative_int, positive_int, run  # noqa: E402

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def photos_in(folder) -> list[pathlib.Path]:
    """The image files under ``folder`` (sub-folders included), sorted."""
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"photo folder not found: {str(folder)!r}")
    found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS)
    if not found:
        raise ValueError(f"no images ({', '.join(EXTENSIONS)}) under {str(folder)!r}")
    return found


def load_grey(path, max_size: int) -> np.ndarray:
    """The photo upright (EXIF), grey float32 in [0, 1], longer side at most ``max_size``."""
    from PIL import UnidentifiedImageError
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im).convert("L")
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"cannot read {str(path)!r} as an image: {exc}") from exc
    f = min(1.0, max_size / max(im.size))
    if f < 1:
        im = im.resize((max(1, round(im.width * f)), max(1, round(im.height * f))),
                       Image.Resampling.LANCZOS)
    return np.asarray(im, np.float32) / 255


def sift_features(path, max_size: int, n_features: int):
    """(xy (n, 2), descriptors (n, 128)) of the shrunk photo (host arrays)."""
    kp, desc = SIFT(n_features=n_features).detect_and_compute(load_grey(path, max_size))
    return np.stack([np.asarray(kp.x), np.asarray(kp.y)], axis=1), np.asarray(desc)


def build_index(paths, root, args) -> InvertedIndex:
    """SIFT on every photo, a vocabulary by k-means, the inverted index."""
    t0 = time.perf_counter()
    feats = [sift_features(p, args.max_size, args.n_features) for p in paths]
    desc = np.concatenate([d for _, d in feats])
    t1 = time.perf_counter()
    k = min(args.vocab, len(desc))
    vocab = BagOfWords(k, seed=args.seed, max_iter=10).fit_vocabulary(desc).vocabulary_
    index = InvertedIndex(vocab)
    for p, (xy, d) in zip(paths, feats):
        index.add(d, xy, name=str(p.relative_to(root)))
    print(f"indexed {len(paths)} photos: {len(desc)} SIFT descriptors ({t1 - t0:.1f} s), "
          f"{k} visual words ({time.perf_counter() - t1:.1f} s)")
    return index


def thumbnail(path, height: int, caption: str, colour) -> Image.Image:
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
        im = im.resize((max(1, round(im.width * height / im.height)), height))
    text_width = 7 * max(len(line) for line in caption.split("\n")) + 4
    out = Image.new("RGB", (max(im.width, text_width), height + 30), "white")
    out.paste(im, (0, 0))
    d = ImageDraw.Draw(out)
    d.rectangle([0, 0, im.width - 1, height - 1], outline=colour, width=3)
    for i, line in enumerate(caption.split("\n")):
        d.text((2, height + 2 + 13 * i), line, fill=(0, 0, 0))
    return out


def results_picture(query, hits, root, height: int) -> Image.Image:
    tiles = [thumbnail(query, height, "query\n" + pathlib.Path(query).name[:24], (40, 120, 255))]
    for rank, (name, score, inl) in enumerate(hits, 1):
        extra = "" if inl is None else f", {inl} inliers"
        tiles.append(thumbnail(root / name, height, f"#{rank} {name[:24]}\n{score:.3f}{extra}",
                               (40, 200, 60) if inl else (160, 160, 160)))
    out = Image.new("RGB", (sum(t.width + 8 for t in tiles), height + 30), "white")
    x = 0
    for t in tiles:
        out.paste(t, (x, 0))
        x += t.width + 8
    return out


def main(argv=None) -> int:
    p = Parser(description="Search a folder of photos for the ones showing the query's scene")
    p.add_argument("folder", help="the photos to search (sub-folders included)")
    p.add_argument("query", help="the query photo")
    p.add_argument("--index", default="runs/bovw_search/index.npz",
                   help="the saved index: reused when it lists the same photos, else rebuilt")
    p.add_argument("--vocab", type=positive_int, default=1000, help="K, visual words")
    p.add_argument("--top", type=positive_int, default=5, help="hits to show")
    p.add_argument("--verify", type=nonnegative_int, default=10,
                   help="re-rank this many best hits by RANSAC inliers (0: tf-idf only)")
    p.add_argument("--max-size", type=positive_int, default=480,
                   help="photos are shrunk so their longer side is at most this (pixels)")
    p.add_argument("--n-features", type=positive_int, default=800,
                   help="the strongest SIFT keypoints kept per photo")
    p.add_argument("--seed", type=int, default=0, help="seed of the k-means")
    p.add_argument("--out", default="runs/bovw_search/results.png",
                   help="picture of the query and its hits")
    args = p.parse_args(argv)
    root = pathlib.Path(args.folder)
    paths = photos_in(root)
    names = [str(q.relative_to(root)) for q in paths]
    index_path = pathlib.Path(args.index)
    index = None
    if index_path.is_file():
        index = InvertedIndex.load(index_path)
        if index.names != names:
            print(f"{index_path} indexes other photos: rebuilding it")
            index = None
        else:
            print(f"loaded {index_path}: {len(index)} photos, {index.vocab_size} words")
    if index is None:
        index = build_index(paths, root, args)
        index_path.parent.mkdir(parents=True, exist_ok=True)
        index.save(index_path)
        print(f"saved {index_path}")
    if not pathlib.Path(args.query).is_file():
        raise FileNotFoundError(f"query photo not found: {args.query!r}")
    xy, desc = sift_features(args.query, args.max_size, args.n_features)
    t0 = time.perf_counter()
    words = index.words(desc)
    hits = index.query_words(words, xy, top_k=args.top, verify=args.verify)
    ms = 1000 * (time.perf_counter() - t0)
    how = f"tf-idf, then RANSAC on the top {args.verify}" if args.verify else "tf-idf"
    print(f"query {args.query}: {len(desc)} features; best {len(hits)} of {len(index)} "
          f"({how}, {ms:.0f} ms)")
    print("rank  score  inliers  photo")
    for rank, (d, score, inl) in enumerate(hits, 1):
        print(f"{rank:>4}  {score:.3f}  {'-' if inl is None else inl:>7}  {index.names[d]}")
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    results_picture(args.query, [(index.names[d], s, i) for d, s, i in hits], root,
                    160).save(out)
    written = [str(out)]
    if args.verify and hits and hits[0][2]:
        from minifeat.draw import draw_matches
        from minifeat.keypoints import Keypoints
        src, dst, mask, _ = index.spatial_matches(words, xy, hits[0][0])
        src, dst = src[mask], dst[mask]       # the pairs that agree with the homography
        kp = [Keypoints(a[:, 0], a[:, 1], np.ones(len(a))) for a in (src, dst)]
        pairs = np.stack([np.arange(len(src))] * 2, axis=1)
        draw_matches(load_grey(args.query, args.max_size), kp[0],
                     load_grey(root / index.names[hits[0][0]], args.max_size), kp[1], pairs,
                     inliers=np.ones(len(src), bool)).save(out.with_name("matches.png"))
        written.append(str(out.with_name("matches.png")))
    print("wrote " + " and ".join(written))
    return 0


if __name__ == "__main__":
    run(main)
