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
    """A textured RGB uint8 image, random colours and noise: class 0 fine reddish stripes
    (period 10 to 16 pixels), class 1 smooth wide bluish blobs."""
    yy, xx = numpy.mgrid[0:size, 0:size].astype(numpy.float64)
    angle, freq = rng.uniform(0, numpy.pi), 2 * numpy.pi / rng.uniform(10, 16)
    if kind == 0:
        t = numpy.sin(freq * (xx * numpy.cos(angle) + yy * numpy.sin(angle)))
    else:
        t = numpy.zeros_like(xx)
        for _ in range(12):
            cy, cx, r = rng.uniform(0, size, 2).tolist() + [rng.uniform(18, 36)]
            t += numpy.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
        t = 2 * t / max(t.max(), 1e-9) - 1
    c0, c1 = rng.uniform(0, 160, (2, 3))
    c0[2 * kind] += 95   # a tint: stripes reddish, blobs bluish (as two photos differ)
    c1[2 * kind] += 95
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


def _model(arch: str, num_classes: int = 2):
    from minidl.layers import Linear
    from minidl.models import get_model
    model = get_model(arch, **({"in_channels": 3} if arch in ("resnet8", "resnet20") else {}))
    model.set_submodule("fc", Linear(model.fc.in_features, num_classes))
    return model


def step_seconds(arch: str, x, y, frozen: bool, repeat: int = 5) -> float:
    """Median seconds of one training step (forward, loss, backward, Adam step) of ``arch`` on
    the batch (x, y): head only on a frozen backbone in eval mode, or the whole network."""
    import minidl
    from benchmarks._common import timeit
    from minidl import functions as F
    from minidl.optim import Adam
    minidl.seed(0)
    model = _model(arch)
    if frozen:
        model.freeze().eval()
        model.fc.unfreeze().train()
    else:
        model.train()
    opt = Adam(model.trainable_parameters(), lr=1e-3)
    xt = minidl.Tensor(x)

    def step():
        loss = F.softmax_cross_entropy(model(xt), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return timeit(step, repeat=repeat, warmup=1, sync=minidl.backend.synchronize)


def loader_images_per_s(root, size: int, batch: int, workers: int) -> float:
    """Augmented images per second that ImageFolderLoader delivers with ``workers`` threads."""
    from minidl.data import ImageFolder, ImageFolderLoader
    from minidl.data.transforms import (ColorJitter, ImageCompose, RandomHorizontalFlip,
                                        RandomResizedCrop)
    ds = ImageFolder(root, ImageCompose([RandomResizedCrop(size), RandomHorizontalFlip(),
                                         ColorJitter(0.4, 0.4, 0.4)]))
    t0 = time.perf_counter()
    n = sum(len(yb) for _, yb in ImageFolderLoader(ds, batch, shuffle=True, seed=0,
                                                   workers=workers))
    return n / (time.perf_counter() - t0)


def main(argv=None) -> int:
    import tempfile

    from benchmarks._common import print_table, save_json
    from minidl.data import ImageFolder, ImageFolderLoader
    from minidl.data.transforms import ResizeCenterCrop
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="resnet8,resnet18,resnet50")
    p.add_argument("--sizes", default="64,112")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args(argv)
    rows, records = [], []
    with tempfile.TemporaryDirectory() as tmp:
        classes = make_photo_folder(tmp, per_class=max(args.batch, 32), min_side=256)
        for size in map(int, args.sizes.split(",")):
            ds = ImageFolder(tmp, ResizeCenterCrop(size))
            x, y = next(iter(ImageFolderLoader(ds, args.batch, shuffle=True, seed=0)))
            for arch in args.models.split(","):
                frozen = step_seconds(arch, x, y, True, args.repeat)
                whole = step_seconds(arch, x, y, False, args.repeat)
                rows.append([arch, f"{size}x{size}", args.batch, f"{frozen:.3f}",
                             f"{whole:.3f}", f"{whole / frozen:.1f}x"])
                records.append({"model": arch, "size": size, "batch": args.batch,
                                "frozen_s_per_step": frozen, "unfrozen_s_per_step": whole})
        print_table(f"seconds per training step, backbone frozen vs unfrozen ({classes})",
                    ["model", "input", "batch", "frozen s", "unfrozen s", "ratio"], rows)
        load = [[w, f"{loader_images_per_s(tmp, 224, args.batch, w):.0f}"] for w in (1, 2)]
        print_table("ImageFolderLoader, 224x224 augmented (crop, flip, jitter), images/s",
                    ["threads", "images/s"], load)
    save_json("finetune", {"steps": records, "loader_224": {str(w): float(v)
                                                            for w, v in load}})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
