"""Fine-tuning cost: seconds per training step of a ResNet with the backbone frozen (only the
new head learns) vs the whole network, on a generated two-class photo folder.

    python -m benchmarks.bench_finetune [--model resnet18] [--size 64] [--batch 16]

With the backbone frozen the autograd records no graph through it (no parameter there
requires a gradient, nor does the input), so a step is one forward pass plus the head's
backward; unfrozen it is forward + the whole backward.  Prints a table and writes
benchmarks/results/finetune.json.  Also home of :func:`make_photo_folder`, the generated data
set that tests and this benchmark share.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import time

import numpy

PHOTOS = ("baboon.jpg", "fruits.jpg")   # two unlike textures: fur vs smooth fruit


def _synthetic(kind: int, rng, size: int = 160) -> numpy.ndarray:
    """A textured RGB uint8 image: class 0 stripes, class 1 blobs, random colours and noise."""
    yy, xx = numpy.mgrid[0:size, 0:size].astype(numpy.float64)
    angle, freq = rng.uniform(0, numpy.pi), rng.uniform(0.15, 0.35)
    if kind == 0:
        t = numpy.sin(freq * (xx * numpy.cos(angle) + yy * numpy.sin(angle)))
    else:
        t = numpy.zeros_like(xx)
        for _ in range(12):
            cy, cx, r = rng.uniform(0, size, 2).tolist() + [rng.uniform(6, 20)]
            t += numpy.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        t = 2 * t / max(t.max(), 1e-9) - 1
    c0, c1 = rng.uniform(0, 255, (2, 3))
    img = (t[..., None] + 1) / 2 * (c1 - c0) + c0 + rng.normal(0, 12, (size, size, 3))
    return numpy.clip(img, 0, 255).astype(numpy.uint8)


def make_photo_folder(root, per_class: int = 24, seed: int = 0, data_dir=None,
                      min_side: int = 72) -> list[str]:
    """Write ``root/<class>/<n>.jpg|png``: ``per_class`` images of each of two classes.

    With photos available (``data_dir``, else ``$MINIDL_DATA/images``, holding
    :data:`PHOTOS`) each image is a random crop (random size, place, aspect) of one of two
    photos, randomly flipped and brightened, resized to a random size >= ``min_side``; the
    classes are named after the photos.  Otherwise synthetic textures (stripes vs blobs).
    Every third file is a PNG; every fifth JPEG is stored rotated with an EXIF orientation
    tag (6: "rotate 90 clockwise to view"), so that reading it upright matters.  Returns the
    class names."""
    from PIL import Image
    rng = numpy.random.default_rng(seed)
    root = pathlib.Path(root)
    data_dir = data_dir or (pathlib.Path(os.environ["MINIDL_DATA"]) / "images"
                            if os.environ.get("MINIDL_DATA") else None)
    sources = None
    if data_dir and all((pathlib.Path(data_dir) / p).is_file() for p in PHOTOS):
        sources = [Image.open(pathlib.Path(data_dir) / p).convert("RGB") for p in PHOTOS]
        names = [p.rsplit(".", 1)[0] for p in PHOTOS]
    else:
        names = ["stripes", "blobs"]
    for c, name in enumerate(names):
        (root / name).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            if sources is not None:
                src = sources[c]
                side = int(rng.uniform(0.3, 0.7) * min(src.size))
                w = min(src.width, int(side * rng.uniform(0.8, 1.25)))
                left = int(rng.integers(0, src.width - w + 1))
                top = int(rng.integers(0, src.height - side + 1))
                out = int(rng.integers(min_side, min_side * 2))
                im = src.resize((out, max(min_side, int(out * side / w))),
                                Image.Resampling.BILINEAR, box=(left, top, left + w, top + side))
                if rng.random() < 0.5:
                    im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
                im = im.point(lambda v, f=rng.uniform(0.7, 1.3): min(255, int(v * f)))
            else:
                im = Image.fromarray(_synthetic(c, rng, int(rng.integers(min_side,
                                                                         2 * min_side))))
            path = root / name / f"{k:03d}"
            if k % 3 == 2:
                im.save(path.with_suffix(".png"))
            elif k % 5 == 4:   # stored sideways, EXIF says how to turn it upright
                exif = Image.Exif()
                exif[0x0112] = 6
                im.transpose(Image.Transpose.ROTATE_90).save(path.with_suffix(".jpg"),
                                                             quality=90, exif=exif)
            else:
                im.save(path.with_suffix(".jpg"), quality=90)
    return names
