"""Photo-like pictures of printed digits, for predict_digit's tests and its accuracy check.

Each picture: a digit 0-9 in one of several fonts (Pillow's scalable default font, DejaVu's
when installed) and stroke widths, dark grey ink on grey paper under a lighting gradient
(and a darker corner), rotated up to 10 degrees, off centre, slightly blurred, with sensor
noise, as 8-bit grey levels.  Deterministic for a seed.
"""
from __future__ import annotations

import pathlib

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

DEJAVU = pathlib.Path("/usr/share/fonts/truetype/dejavu")
_DEJAVU_FACES = ["DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf",
                 "DejaVuSansMono.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSansCondensed.ttf"]


def fonts() -> list:
    """(name, size -> ImageFont) for every usable face: Pillow's own scalable font (Pillow
    >= 10.1) and the DejaVu faces found under /usr/share/fonts."""
    out = []
    try:
        ImageFont.load_default(size=20)
        out.append(("pillow-default", lambda size: ImageFont.load_default(size=size)))
    except TypeError:   # Pillow < 10.1: only the fixed 11-pixel bitmap font
        pass
    for face in _DEJAVU_FACES:
        path = DEJAVU / face
        if path.is_file():
            out.append((face, lambda size, p=str(path): ImageFont.truetype(p, size)))
    return out


def photo_digit(digit: int, rng: np.random.Generator, font, size: int = 160,
                stroke: int = 0) -> np.ndarray:
    """A (size, size) uint8 photo of ``digit`` drawn with ``font`` (size -> ImageFont) and an
    outline of ``stroke`` pixels (thicker strokes)."""
    glyph_px = int(size * rng.uniform(0.35, 0.55))
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    f = font(glyph_px)
    box = draw.textbbox((0, 0), str(digit), font=f, stroke_width=stroke)
    gw, gh = box[2] - box[0], box[3] - box[1]
    # off centre: up to a fifth of the free room either way
    cx = size / 2 + rng.uniform(-0.2, 0.2) * (size - gw)
    cy = size / 2 + rng.uniform(-0.2, 0.2) * (size - gh)
    draw.text((cx - gw / 2 - box[0], cy - gh / 2 - box[1]), str(digit), fill=255, font=f,
              stroke_width=stroke, stroke_fill=255)
    canvas = canvas.rotate(rng.uniform(-10, 10), resample=Image.Resampling.BICUBIC,
                           center=(cx, cy))
    canvas = canvas.filter(ImageFilter.GaussianBlur(rng.uniform(0.6, 1.6)))
    ink_cover = np.asarray(canvas, dtype=np.float64) / 255

    yy, xx = np.mgrid[0:size, 0:size] / size
    angle = rng.uniform(0, 2 * np.pi)
    # grey paper, lit unevenly: a linear gradient and a darker corner (vignetting)
    paper = rng.uniform(0.55, 0.85) + rng.uniform(0.1, 0.25) * (
        np.cos(angle) * (xx - 0.5) + np.sin(angle) * (yy - 0.5))
    corner = rng.integers(0, 2, 2)
    paper -= rng.uniform(0, 0.15) * ((xx - corner[1]) ** 2 + (yy - corner[0]) ** 2) / 2
    ink = rng.uniform(0.05, 0.25)
    img = paper * (1 - ink_cover) + ink * ink_cover
    img += rng.normal(0, rng.uniform(0.01, 0.035), img.shape)   # sensor noise
    return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)


def photo_digit_set(n: int = 60, seed: int = 0, size: int = 160):
    """``n`` photos (list of (digit, uint8 (size, size), description)): the digits 0-9 in
    turn, cycling through the fonts and stroke widths 0, 1, 2, 3."""
    rng = np.random.default_rng(seed)
    faces = fonts()
    if not faces:
        raise RuntimeError("no scalable font: Pillow >= 10.1 or DejaVu fonts are needed")
    out = []
    for i in range(n):
        digit = i % 10
        name, font = faces[(i // 10 + i) % len(faces)]
        stroke = [0, 1, 2, 3][(i // 3) % 4]
        out.append((digit, photo_digit(digit, rng, font, size, stroke),
                    f"{digit} in {name}, stroke {stroke}"))
    return out
