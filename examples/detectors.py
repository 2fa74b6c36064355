"""Classical feature detectors by hand: Canny edges, Harris / Shi-Tomasi corners, LoG / DoG blobs.

Every detector in ``minifeat`` follows one pattern: compute a *response* image with a few
separable filters, then keep the pixels where the response is a local maximum.

* **Edges** (Canny 1986): smooth, take the gradient, keep the pixels that are the largest along
  the gradient direction (a thin line), then keep weak edge pixels only when they are connected
  to strong ones (hysteresis).
* **Corners** (Harris & Stephens 1988, Shi & Tomasi 1994): the structure tensor
  ``M = window * [[Ix^2, IxIy], [IxIy, Iy^2]]`` has two large eigenvalues at a corner, one at an
  edge, none in a flat region.  Harris scores ``det M - k trace(M)^2``, Shi-Tomasi the smaller
  eigenvalue; ``corner_peaks`` keeps local maxima at least ``min_distance`` apart.
* **Blobs** (Lindeberg 1998): the scale-normalised Laplacian ``-sigma^2 Laplacian(G_sigma * I)``
  peaks at the centre of a bright disk of radius ``r`` when ``sigma = r / sqrt(2)``; maxima over
  space *and* scale give position and size.  DoG approximates it with differences of blurs.

Run it on any image (bright blobs on a dark background for the blob panels; ``--dark-blobs``
inverts)::

    python examples/detectors.py ../shared/data/images/detect_blob.png -o runs/detectors
    python examples/detectors.py ../shared/data/images/chessboard.png -o runs/chess --max-size 600
    python examples/detectors.py IMAGE -o OUT --backend cupy          # the same code on a GPU

It writes ``edges.png``, ``corners.png`` (Harris red, Shi-Tomasi green) and ``blobs.png`` (LoG
red, DoG green circles of radius ``sqrt(2) sigma``) to ``OUT`` and prints what it found.  Exit
status 1 when a detector finds nothing (so a broken pipeline cannot pass silently).
"""
from __future__ import annotations

import math
import pathlib
import sys
import time

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import minidl  # noqa: E402
from minidl.backend import to_host  # noqa: E402
from minifeat.blobs import blob_dog, blob_log  # noqa: E402
from minifeat.corners import corner_harris, corner_peaks, corner_shi_tomasi  # noqa: E402
from minifeat.edges import edges_canny  # noqa: E402

from _cli import Parser, add_backend, positive_float, positive_int, read_gray, run  # noqa: E402


def load_gray(path, max_size: int) -> tuple[Image.Image, np.ndarray]:
    """The image shrunk so its longer side is at most ``max_size``: an RGB picture to draw on
    and its gray levels as float64 in [0, 1] (Rec. 601 luma).  The gray levels come from
    ``minifeat.load_image``, which scales 8- and 16-bit files alike; the picture is Pillow's RGB
    for 8-bit colour files and the gray levels otherwise (Pillow clips 16-bit values)."""
    gray = read_gray(path)
    with Image.open(path) as im:
        colour = im.mode in ("RGB", "RGBA", "P", "CMYK", "YCbCr", "LAB", "HSV")
        rgb = Image.fromarray(np.round(gray * 255).astype(np.uint8)).convert("RGB")
        if colour:
            from PIL import ImageOps
            rgb = ImageOps.exif_transpose(im).convert("RGB")
    h, w = gray.shape
    scale = max_size / max(h, w)
    if scale < 1:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        rgb = rgb.resize(size, Image.BILINEAR)
        gray = np.asarray(Image.fromarray(gray.astype(np.float32), mode="F")
                          .resize(size, Image.BILINEAR))
    return rgb, np.clip(gray.astype(np.float64), 0.0, 1.0)


def draw_edges(rgb: Image.Image, edges: np.ndarray) -> Image.Image:
    """Edge pixels in red over a dimmed copy of the image."""
    out = np.asarray(rgb, dtype=np.float64) * 0.4
    out[edges] = (255, 0, 0)
    return Image.fromarray(out.astype(np.uint8))


def draw_points(rgb: Image.Image, sets) -> Image.Image:
    """``sets``: (coords (K, 2) rows (row, col), colour, radius) -> small circles."""
    out = rgb.copy()
    d = ImageDraw.Draw(out)
    for coords, colour, r in sets:
        for y, x in coords:
            d.ellipse([x - r, y - r, x + r, y + r], outline=colour, width=2)
    return out


def draw_blobs(rgb: Image.Image, sets) -> Image.Image:
    """``sets``: (blobs (K, 3) rows (y, x, sigma), colour) -> circles of radius sqrt(2) sigma."""
    out = rgb.copy()
    d = ImageDraw.Draw(out)
    for blobs, colour in sets:
        for y, x, s in blobs:
            r = math.sqrt(2) * s
            d.ellipse([x - r, y - r, x + r, y + r], outline=colour, width=2)
    return out


def main(argv=None) -> int:
    p = Parser(description="Detect edges, corners and blobs in an image.")
    p.add_argument("image", help="path of an image file (8/16-bit grey or colour, any format "
                                 "Pillow reads)")
    p.add_argument("-o", "--out", default="runs/detectors", help="folder for the PNGs")
    add_backend(p)
    p.add_argument("--max-size", type=positive_int, default=800,
                   help="shrink the longer side to this")
    p.add_argument("--sigma", type=positive_float, default=2.0, help="Canny smoothing")
    p.add_argument("--min-distance", type=positive_int, default=5,
                   help="between corners, in pixels")
    p.add_argument("--max-sigma", type=positive_float, default=30.0, help="largest blob scale")
    p.add_argument("--blob-threshold", type=positive_float, default=0.2,
                   help="minimum scale-normalised response (gray levels) of a blob")
    p.add_argument("--dark-blobs", action="store_true", help="look for dark blobs on light")
    args = p.parse_args(argv)
    try:
        minidl.use_backend(args.backend)
    except minidl.BackendUnavailableError as exc:
        sys.exit(f"error: {exc}")
    xp = minidl.backend.get_xp()

    rgb, gray = load_gray(args.image, args.max_size)
    image = xp.asarray(gray)                      # host -> the backend's device
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"{args.image}: {gray.shape[1]}x{gray.shape[0]} on {args.backend}")

    # 1. Edges: the thresholds are in gray levels per pixel of the smoothed image's gradient.
    t = time.perf_counter()
    edges = to_host(edges_canny(image, sigma=args.sigma))
    print(f"  canny       {int(edges.sum()):7d} edge pixels    {time.perf_counter() - t:6.2f} s")
    draw_edges(rgb, edges).save(out / "edges.png")

    # 2. Corners: both responses, the same peak picking (5% of the strongest response).
    t = time.perf_counter()
    harris = to_host(corner_peaks(corner_harris(image, k=0.05, sigma=1.0),
                                  min_distance=args.min_distance, threshold_rel=0.05))
    shi = to_host(corner_peaks(corner_shi_tomasi(image, sigma=1.0),
                               min_distance=args.min_distance, threshold_rel=0.05))
    print(f"  harris      {len(harris):7d} corners        (shi-tomasi {len(shi)})"
          f" {time.perf_counter() - t:6.2f} s")
    draw_points(rgb, [(shi, (0, 255, 0), 4), (harris, (255, 0, 0), 6)]).save(out / "corners.png")

    # 3. Blobs: LoG over 10 linear sigmas, DoG over a geometric ladder (ratio 1.6).
    blob_image = 1.0 - image if args.dark_blobs else image
    t = time.perf_counter()
    log = to_host(blob_log(blob_image, min_sigma=3, max_sigma=args.max_sigma, num_sigma=10,
                           threshold=args.blob_threshold))
    dog = to_host(blob_dog(blob_image, min_sigma=3, max_sigma=args.max_sigma,
                           threshold=args.blob_threshold))
    print(f"  blobs       {len(log):7d} LoG, {len(dog)} DoG   {time.perf_counter() - t:6.2f} s")
    draw_blobs(rgb, [(log, (255, 0, 0)), (dog, (0, 255, 0))]).save(out / "blobs.png")

    print(f"wrote edges.png, corners.png, blobs.png to {out}")
    missing = [name for name, n in (("edges", edges.sum()), ("corners", len(harris)),
                                    ("blobs", len(log))) if n == 0]
    if missing:
        print(f"nothing found for: {', '.join(missing)}")
        return 1
    return 0


if __name__ == "__main__":
    run(main)
