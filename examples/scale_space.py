"""Where SIFT looks for keypoints: the Gaussian pyramid, the difference-of-Gaussians (DoG)
stack, and the extrema found in it, octave by octave.

SIFT (Lowe 2004) blurs the image more and more: within an *octave* image ``s`` has blur
``sigma * 2**(s / S)`` (S = 3 intervals, so S + 3 = 6 images), and the next octave starts
from the image with twice the first blur, taken at every other pixel (half the size; the
first octave is the input upsampled 2x).  Subtracting neighbouring blurs gives the DoG,
an approximation of the scale-normalised Laplacian ``sigma^2 (d2/dx2 + d2/dy2)``: a blob
of the right size gives a strong positive or negative response.  A keypoint candidate is a
DoG sample that is larger (or smaller) than its 26 neighbours -- 8 in its own level, 9 in the
level above and 9 below.  Each candidate is then located to sub-pixel accuracy by fitting a
quadratic, and two tests remove the unstable ones:

* **contrast**: ``|D(x)| * S < 0.04``: too weak, noise would move it;
* **edge**: the ratio of the two principal curvatures (from the 2x2 Hessian) above 10: a point
  on an edge is well located across the edge but not along it.

Pictures written to ``--out``:

* ``scale_space.png``: one band per octave, the Gaussian images on top and the DoG levels
  below (grey = 0, light = positive, dark = negative); red dots: every 26-neighbour extremum
  on its DoG level, green circles: those kept after both tests (radius = their blur).
* ``keypoints.png``: left, the located candidates on the image -- blue failed the contrast
  test, orange the edge test, green kept; right, SIFT's final keypoints (size and orientation).

    python examples/scale_space.py $MINIDL_DATA/images/butterfly.jpg
"""
from __future__ import annotations

import pathlib
import sys

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from minifeat import SIFT  # noqa: E402
from minifeat.draw import draw_keypoints  # noqa: E402
from minifeat.extrema import extrema_tests, find_extrema, localize_extrema  # noqa: E402
from minifeat.scale_space import build_scale_space  # noqa: E402

from _cli import Parser, positive_float, positive_int, read_gray, run  # noqa: E402

GREEN, RED, BLUE, ORANGE = (40, 200, 60), (230, 30, 30), (60, 120, 255), (255, 150, 0)


def shrink(image, max_size: int):
    """The grey image with its longer side at most ``max_size`` (smaller pictures)."""
    h, w = image.shape
    if max(h, w) <= max_size:
        return image
    f = max_size / max(h, w)
    small = Image.fromarray(image).resize((max(1, round(w * f)), max(1, round(h * f))),
                                          Image.Resampling.LANCZOS)
    return np.clip(np.asarray(small, np.float32), 0, 1)


def stages(image, S: int, contrast: float, edge: float, sigma: float = 1.6):
    """The scale space and, per octave, the candidates and the tests' verdicts (host arrays):
    ``[{"found": (s, r, c), "located": dict, "contrast_ok": mask, "edge_ok": mask}, ...]``.
    The same calls, with the same thresholds, that :class:`minifeat.SIFT` makes."""
    ss = build_scale_space(image, sigma, S)
    per_octave = []
    for dog in ss.dogs:
        found = find_extrema(dog, 0.5 * contrast / S)   # SIFT's pre-threshold, half the test
        located = localize_extrema(dog, *found, S)
        c_ok, e_ok = extrema_tests(located, S, contrast, edge)
        per_octave.append(dict(found=found, located=located, contrast_ok=c_ok, edge_ok=e_ok))
    return ss, per_octave


def _grey(a, symmetric: bool):
    """A float map as uint8: [0, 1] as it is, or symmetric around 0 (grey = 0)."""
    if symmetric:
        a = 0.5 + 0.5 * a / max(float(np.abs(a).max()), 1e-12)
    return np.clip(np.rint(a * 255), 0, 255).astype(np.uint8)


def pyramid_picture(ss, per_octave, tile_width: int) -> Image.Image:
    """Each octave's Gaussians (top row) and DoGs (bottom row), every tile ``tile_width``
    wide (nearest neighbour: the smaller octaves show their coarser pixels)."""
    S = ss.n_intervals
    H0, W0 = ss.gaussians[0].shape[1:]
    th = max(1, round(tile_width * H0 / W0))
    pad, label = 4, 14
    band = 2 * (th + label + pad)
    canvas = Image.new("RGB", ((S + 3) * (tile_width + pad) + pad, len(ss.dogs) * band + pad),
                       "white")
    draw = ImageDraw.Draw(canvas)
    for o, (g, dog, st) in enumerate(zip(ss.gaussians, ss.dogs, per_octave)):
        octave = o + ss.first_octave
        y0 = pad + o * band
        f = tile_width / g.shape[2]       # display pixels per octave pixel
        scale = 2.0 ** octave             # input pixels per octave pixel
        for row, stack, symmetric, what in ((0, g, False, "G"), (1, dog, True, "DoG")):
            y = y0 + row * (th + label + pad)
            peak = np.abs(stack).max()
            for s in range(stack.shape[0]):
                x = pad + s * (tile_width + pad)
                im = stack[s] / peak if symmetric else stack[s]
                canvas.paste(Image.fromarray(_grey(im, symmetric)).resize(
                    (tile_width, th), Image.Resampling.NEAREST), (x, y + label))
                blur = ss.sigma * 2 ** (s / S) * scale
                name = f"o{octave} {what}{s} s={blur:.1f}" if row == 0 else \
                    f"o{octave} {what}{s}-{s + 1}"
                draw.text((x, y), name, fill=(0, 0, 0))
                if row == 1:
                    _mark(draw, st, s, x, y + label, f)
    return canvas


def _mark(draw, st, s, x0, y0, f):
    """Red dots: the 26-neighbour extrema found on DoG level ``s``; green circles: the
    candidates located on that level that pass both tests (radius = blur / octave pixel)."""
    fs, fr, fc = st["found"]
    for r, c in zip(fr[fs == s], fc[fs == s]):
        x, y = x0 + (c + 0.5) * f, y0 + (r + 0.5) * f
        draw.ellipse([x - 1.5, y - 1.5, x + 1.5, y + 1.5], fill=RED)
    loc, kept = st["located"], st["contrast_ok"] & st["edge_ok"]
    on = kept & (loc["s"] == s)
    for r, c, oy, ox, os_ in zip(loc["r"][on], loc["c"][on], loc["oy"][on], loc["ox"][on],
                                 loc["os"][on]):
        x, y = x0 + (c + ox + 0.5) * f, y0 + (r + oy + 0.5) * f
        rad = max(2.0, 1.6 * 2 ** ((s + os_) / 3) * f)
        draw.ellipse([x - rad, y - rad, x + rad, y + rad], outline=GREEN, width=1)


def candidates_picture(image, ss, per_octave, keypoints) -> Image.Image:
    """Left: the located candidates coloured by the tests; right: SIFT's final keypoints."""
    left = Image.fromarray(_grey(image, False)).convert("RGB")
    draw = ImageDraw.Draw(left)
    for o, st in enumerate(per_octave):
        scale = 2.0 ** (o + ss.first_octave)
        loc = st["located"]
        colours = np.where(~st["contrast_ok"], 0, np.where(~st["edge_ok"], 1, 2))
        for k in np.argsort(colours, kind="stable"):     # kept ones drawn last, on top
            x = (loc["c"][k] + loc["ox"][k] + 0.5) * scale - 0.5
            y = (loc["r"][k] + loc["oy"][k] + 0.5) * scale - 0.5
            rad = 1.5 if colours[k] < 2 else 2.5
            draw.ellipse([x - rad, y - rad, x + rad, y + rad],
                         fill=(BLUE, ORANGE, GREEN)[colours[k]])
    right = draw_keypoints(image, keypoints)
    both = Image.new("RGB", (left.width * 2 + 6, left.height), "white")
    both.paste(left, (0, 0))
    both.paste(right, (left.width + 6, 0))
    return both


def main(argv=None) -> int:
    p = Parser(description="SIFT's Gaussian and DoG pyramids with their extrema, as pictures")
    p.add_argument("image", help="an image file (any format Pillow reads)")
    p.add_argument("--out", default="runs/scale_space", help="folder for the PNG files")
    p.add_argument("--max-size", type=positive_int, default=320,
                   help="shrink the image so its longer side is at most this (pixels)")
    p.add_argument("--tile", type=positive_int, default=160,
                   help="width of each pyramid image in the picture (pixels)")
    p.add_argument("--intervals", type=positive_int, default=3, help="S, levels per octave")
    p.add_argument("--contrast", type=positive_float, default=0.04,
                   help="contrast threshold on |D| * S")
    p.add_argument("--edge", type=positive_float, default=10.0,
                   help="largest allowed ratio of principal curvatures")
    args = p.parse_args(argv)
    image = shrink(read_gray(args.image), args.max_size)
    S = args.intervals
    ss, per_octave = stages(image, S, args.contrast, args.edge)
    print(f"{args.image}: {image.shape[1]}x{image.shape[0]} pixels, {len(ss.dogs)} octaves "
          f"of {S + 3} Gaussians and {S + 2} DoGs (octave -1 is the 2x upsampled image)")
    print("octave  size      extrema  located  low contrast  on edge  kept")
    total = 0
    for o, st in enumerate(per_octave):
        c_ok, e_ok = st["contrast_ok"], st["edge_ok"]
        kept = c_ok & e_ok
        # SIFT keeps one keypoint per sample that several candidates converged to
        loc = st["located"]
        unique = len({(a, b, c) for a, b, c in zip(loc["s"][kept], loc["r"][kept],
                                                  loc["c"][kept])})
        total += unique
        h, w = ss.dogs[o].shape[1:]
        print(f"{o + ss.first_octave:>6}  {w:>4}x{h:<4} {len(st['found'][0]):>8} "
              f"{len(c_ok):>8} {int((~c_ok).sum()):>13} {int((c_ok & ~e_ok).sum()):>8} "
              f"{unique:>5}")
    sift = SIFT(n_intervals=S, contrast_threshold=args.contrast, edge_threshold=args.edge)
    keypoints = sift.detect(image)
    places = len({(round(float(x), 3), round(float(y), 3))
                  for x, y in zip(keypoints.x, keypoints.y)})
    print(f"kept {total} extrema; SIFT finds {len(keypoints)} keypoints at {places} places "
          "(a place with several strong gradient directions gives one keypoint per direction)")
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pyramid_picture(ss, per_octave, args.tile).save(out / "scale_space.png")
    candidates_picture(image, ss, per_octave, keypoints).save(out / "keypoints.png")
    print(f"wrote {out}/scale_space.png (top: Gaussians, bottom: DoGs; red: 26-neighbour "
          "extrema, green: kept) and keypoints.png (blue: low contrast, orange: on an edge, "
          "green: kept | SIFT's keypoints)")
    return 0


if __name__ == "__main__":
    run(main)
