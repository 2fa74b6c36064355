"""A photo is a grid of numbers: each pixel holds three integers 0..255, how much red, green
and blue light it emits (8 bits each; 0 = none, 255 = full).  ``#RRGGBB`` is the same three
numbers in hexadecimal, as HTML writes colours: (255, 128, 0) = #FF8000, orange.

Pictures written to ``--out``:

* ``crop.png``: a small crop, enlarged, with each pixel's R, G and B values written in it;
* ``channels.png``: the whole image, its R, G and B channels as grey pictures side by side
  (white = 255: a red flower is light in R and dark in G and B), and the grey conversion;
* ``grey_crop.png``: the same crop in grey levels, one number per pixel -- what SIFT and the
  MNIST networks see.

The grey level is a weighted sum that follows the eye's sensitivity (most to green, least to
blue), ITU-R BT.601 luma as ``minifeat.load_image`` computes it:
``Y = 0.299 R + 0.587 G + 0.114 B``.

    python examples/pixels.py $MINIDL_DATA/images/fruits.jpg --at 100,80 --at 300,200
    python examples/pixels.py photo.jpg --crop 120,40 --size 10
"""
from __future__ import annotations

import pathlib
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageOps

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from minifeat.io import REC601  # noqa: E402

from _cli import Parser, positive_int, run  # noqa: E402


def point(text: str):
    """``"X,Y"`` -> (x, y) ints >= 0 (argparse type)."""
    import argparse
    try:
        x, y = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not X,Y (two integers)") from None
    if x < 0 or y < 0:
        raise argparse.ArgumentTypeError(f"{text!r}: X and Y must be >= 0")
    return x, y


def read_rgb(path) -> np.ndarray:
    """The file as uint8 (H, W, 3), turned upright by its EXIF orientation."""
    from PIL import UnidentifiedImageError
    if not pathlib.Path(path).is_file():
        raise FileNotFoundError(f"image file not found: {str(path)!r}")
    try:
        with Image.open(path) as im:
            return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"cannot read {str(path)!r} as an image: {exc}") from exc


def grey(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma of uint8 RGB (H, W, 3) as float (H, W) in 0..255."""
    return rgb.astype(np.float64) @ np.asarray(REC601, np.float64)


def hex_code(rgb) -> str:
    """(255, 128, 0) -> '#FF8000'."""
    return "#" + "".join(f"{int(v):02X}" for v in rgb)


def number_grid(values: np.ndarray, colours: np.ndarray, cell: int) -> Image.Image:
    """Each pixel a ``cell`` x ``cell`` square of its colour with its value(s) written in it:
    ``values`` (h, w, k) ints, one line per channel; the text black or white, whichever
    stands out."""
    h, w, k = values.shape
    im = Image.fromarray(colours).resize((w * cell, h * cell), Image.Resampling.NEAREST)
    draw = ImageDraw.Draw(im)
    for r in range(h):
        for c in range(w):
            ink = (0, 0, 0) if grey(colours[r:r + 1, c:c + 1])[0, 0] > 110 else (255, 255, 255)
            for i in range(k):
                draw.text((c * cell + 3, r * cell + 2 + i * 11), f"{int(values[r, c, i])}",
                          fill=ink)
            draw.rectangle([c * cell, r * cell, (c + 1) * cell - 1, (r + 1) * cell - 1],
                           outline=(128, 128, 128))
    return im


def channels_picture(rgb: np.ndarray, width: int) -> Image.Image:
    """The image | R | G | B | grey, each ``width`` pixels wide, labelled."""
    H, W = rgb.shape[:2]
    h = max(1, round(width * H / W))
    y = np.clip(np.rint(grey(rgb)), 0, 255).astype(np.uint8)
    panels = [("RGB", rgb), ("R", rgb[..., 0]), ("G", rgb[..., 1]), ("B", rgb[..., 2]),
              ("grey = .299R + .587G + .114B", y)]
    out = Image.new("RGB", (len(panels) * (width + 6), h + 16), "white")
    draw = ImageDraw.Draw(out)
    for i, (name, a) in enumerate(panels):
        x = i * (width + 6)
        out.paste(Image.fromarray(a).convert("RGB").resize((width, h)), (x, 16))
        draw.text((x, 2), name, fill=(0, 0, 0))
    return out


def main(argv=None) -> int:
    p = Parser(description="A photo as numbers: pixel values, RGB channels, hex codes, grey")
    p.add_argument("image", help="an image file (any format Pillow reads)")
    p.add_argument("--at", type=point, action="append", default=[], metavar="X,Y",
                   help="print this pixel's values and hex code (repeatable)")
    p.add_argument("--crop", type=point, default=None, metavar="X,Y",
                   help="top-left corner of the crop (default: centred)")
    p.add_argument("--size", type=positive_int, default=12,
                   help="the crop is SIZE x SIZE pixels")
    p.add_argument("--cell", type=positive_int, default=36,
                   help="pixels per crop pixel in the pictures")
    p.add_argument("--width", type=positive_int, default=240,
                   help="width of each panel of channels.png")
    p.add_argument("--out", default="runs/pixels", help="folder for the PNG files")
    args = p.parse_args(argv)
    rgb = read_rgb(args.image)
    H, W = rgb.shape[:2]
    print(f"{args.image}: {W} x {H} pixels x 3 channels (R, G, B) of uint8 = "
          f"{rgb.size:,} numbers, {rgb.nbytes / 1024:.0f} KiB uncompressed")
    n = min(args.size, H, W)
    x0, y0 = args.crop if args.crop else ((W - n) // 2, (H - n) // 2)
    if x0 + n > W or y0 + n > H:
        raise ValueError(f"--crop {x0},{y0} with --size {n} leaves the {W}x{H} image "
                         f"(the corner must be at most {W - n},{H - n})")
    for x, y in args.at:
        if x >= W or y >= H:
            raise ValueError(f"--at {x},{y} is outside the {W}x{H} image "
                             f"(X < {W}, Y < {H})")
        r, g, b = (int(v) for v in rgb[y, x])
        print(f"pixel (x={x}, y={y}): R={r:3d} G={g:3d} B={b:3d} = {hex_code((r, g, b))}; "
              f"grey = {REC601[0]}*{r} + {REC601[1]}*{g} + {REC601[2]}*{b} = "
              f"{grey(rgb[y:y + 1, x:x + 1])[0, 0]:.1f}")
    crop = rgb[y0:y0 + n, x0:x0 + n]
    print(f"crop: x {x0}..{x0 + n - 1}, y {y0}..{y0 + n - 1}; its top-left pixel is "
          f"{tuple(int(v) for v in crop[0, 0])} = {hex_code(crop[0, 0])}")
    print(f"grey conversion (ITU-R BT.601 luma): Y = {REC601[0]} R + {REC601[1]} G + "
          f"{REC601[2]} B")
    y = np.clip(np.rint(grey(crop)), 0, 255).astype(np.uint8)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    number_grid(crop, crop, args.cell).save(out / "crop.png")
    number_grid(y[..., None], np.repeat(y[..., None], 3, axis=2), args.cell).save(
        out / "grey_crop.png")
    channels = channels_picture(rgb, args.width)
    draw = ImageDraw.Draw(channels)
    f = args.width / W     # the crop's place, outlined in the RGB panel
    draw.rectangle([x0 * f, 16 + y0 * f, (x0 + n) * f, 16 + (y0 + n) * f], outline=(255, 0, 0))
    channels.save(out / "channels.png")
    print(f"wrote {out}/crop.png (each pixel: R, G, B), grey_crop.png (Y per pixel), "
          "channels.png (image | R | G | B | grey; the crop outlined in red)")
    return 0


if __name__ == "__main__":
    run(main)
