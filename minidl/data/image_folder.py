"""A folder of photos as a labelled data set, and a loader that decodes them in the background.

::

    photos/                      ImageFolder("photos") -> classes ("ferry", "not_ferry")
        ferry/      a.jpg b.png ...      label 0
        not_ferry/  c.jpeg ...           label 1

    from minidl.data import ImageFolder, ImageFolderLoader
    from minidl.data.image_transforms import (ColorJitter, ImageCompose,
                                              RandomHorizontalFlip, RandomResizedCrop)
    train = ImageFolder("photos", transform=ImageCompose([
        RandomResizedCrop(224), RandomHorizontalFlip(), ColorJitter(0.4, 0.4, 0.4)]))
    for x, y in ImageFolderLoader(train, batch_size=32, shuffle=True, seed=0):
        ...          # x float32 (32, 3, 224, 224) normalised with ImageNet's mean/std, y int64

Class names are the sub-folder names, sorted; label i is ``classes[i]``.  Images are ``.jpg``,
``.jpeg`` and ``.png`` files (any case) directly inside a class folder; each is read upright
(its EXIF orientation applied, as a phone camera records it) and as 8-bit RGB
(:func:`open_rgb`).

Decoding a JPEG and resizing it take longer than the model's step on a small network, so
:class:`ImageFolderLoader` decodes in a ``concurrent.futures.ThreadPoolExecutor``: while the
caller computes on batch b, ``workers`` threads already decode the images of batches b+1 ..
b+``prefetch``.  Threads suffice because Pillow releases the GIL while it decodes and
resamples (the work is in C); no process start-up, no pickling of the data set.  Every sample
gets its own Generator, seeded from the loader's in the main thread, so the augmented batches
are the same whichever thread ran which image.
"""
from __future__ import annotations

import collections
import concurrent.futures
import os
import pathlib

import numpy

from minidl import backend as B
from minidl.data.imagenet import IMAGENET_MEAN, IMAGENET_STD, to_rgb8

__all__ = ["IMAGE_EXTENSIONS", "UnreadableImageError", "open_rgb", "ImageFolder",
           "ImageFolderLoader"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


class UnreadableImageError(ValueError):
    """An image file that Pillow cannot decode (the message names the file)."""


def open_rgb(path):
    """The image file ``path`` as an upright 8-bit RGB PIL image (EXIF orientation applied;
    grey, palette, alpha and 16-bit images converted by :func:`minidl.data.imagenet.to_rgb8`).
    Raises :class:`UnreadableImageError` naming the file when it is not a readable image."""
    from PIL import Image, ImageOps, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            im.load()
            upright = ImageOps.exif_transpose(im)
            return to_rgb8(upright if upright is not im else im.copy())
    except FileNotFoundError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise UnreadableImageError(f"cannot read image {str(path)!r}: "
                                   f"{' '.join(str(exc).split()) or type(exc).__name__}") \
            from exc


class ImageFolder:
    """Labelled photos from ``root/<class name>/<image file>``.

    Parameters
    ----------
    root : path of a folder holding one sub-folder per class (at least one, each with at
        least one image; hidden entries, starting with ".", are skipped).
    transform : None or ``transform(image) -> image`` on the RGB PIL image; one with
        ``takes_rng = True`` (the transforms of :mod:`minidl.data.image_transforms`) is called as
        ``transform(image, rng=...)`` with the sample's Generator.  For batching, it must give
        the same size for every image (a crop), as a PIL image or uint8 (H, W, 3) array.
    extensions : the file endings taken as images (compared case-insensitively).

    Attributes: ``classes`` (sorted names), ``class_to_idx``, ``samples`` (list of (path,
    label)), ``targets`` (int64 (N,)).  ``dataset[i]`` -> (transformed image, label).
    """

    def __init__(self, root, transform=None, extensions=IMAGE_EXTENSIONS):
        self.root = pathlib.Path(root)
        self.transform = transform
        self.extensions = tuple(e.lower() for e in extensions)
        if not self.root.is_dir():
            raise FileNotFoundError(f"ImageFolder: root {str(self.root)!r} is not a folder"
                                    if self.root.exists() else
                                    f"ImageFolder: root {str(self.root)!r} does not exist")
        entries = sorted(p for p in self.root.iterdir() if not p.name.startswith("."))
        self.classes = tuple(p.name for p in entries if p.is_dir())
        if not self.classes:
            what = (f"holds {len(entries)} files but no class sub-folders" if entries
                    else "is empty")
            raise ValueError(f"ImageFolder: {str(self.root)!r} {what}; expected one "
                             "sub-folder per class (root/<class>/<image>.jpg)")
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.samples = []
        for c in self.classes:
            files = sorted(f for f in (self.root / c).iterdir()
                           if f.is_file() and f.suffix.lower() in self.extensions
                           and not f.name.startswith("."))
            if not files:
                raise ValueError(f"ImageFolder: class folder {str(self.root / c)!r} holds no "
                                 f"image ({', '.join(self.extensions)})")
            self.samples += [(f, self.class_to_idx[c]) for f in files]
        self.targets = numpy.array([label for _, label in self.samples], dtype=numpy.int64)

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int, rng=None):
        """Sample ``index`` as (image after ``transform``, label); ``rng`` goes to a
        transform that takes one (default: minidl's host Generator)."""
        path, label = self.samples[index]
        image = open_rgb(path)
        t = self.transform
        if t is not None:
            if getattr(t, "takes_rng", False):
                image = t(image, rng=B.host_rng() if rng is None else rng)
            else:
                image = t(image)
        return image, label

    def __getitem__(self, index: int):
        return self.load(index)

    def subset(self, indices, transform=None) -> "ImageFolder":
        """The samples at ``indices`` (a train / validation split) with their own
        ``transform``; the same classes."""
        sub = object.__new__(ImageFolder)
        sub.root, sub.extensions, sub.transform = self.root, self.extensions, transform
        sub.classes, sub.class_to_idx = self.classes, self.class_to_idx
        sub.samples = [self.samples[int(i)] for i in indices]
        sub.targets = numpy.array([label for _, label in sub.samples], dtype=numpy.int64)
        return sub

    def split(self, val_fraction: float, seed: int = 0):
        """(train indices, validation indices): ``val_fraction`` of every class (at least one
        image of each class with two or more) drawn at random with ``seed``."""
        if not 0 < val_fraction < 1:
            raise ValueError(f"split: val_fraction must be in (0, 1), got {val_fraction!r}")
        rng = numpy.random.default_rng(seed)
        train, val = [], []
        for c in range(len(self.classes)):
            idx = rng.permutation(numpy.flatnonzero(self.targets == c))
            k = min(len(idx) - 1, max(1, int(round(val_fraction * len(idx)))))
            val += idx[:k].tolist()
            train += idx[k:].tolist()
        return numpy.sort(numpy.array(train, int)), numpy.sort(numpy.array(val, int))

    def __repr__(self):
        return (f"ImageFolder({str(self.root)!r}, {len(self)} images, classes="
                f"{list(self.classes)})")


class ImageFolderLoader:
    """Mini-batches of an :class:`ImageFolder`, decoded in background threads.

    Parameters
    ----------
    dataset : an :class:`ImageFolder` whose transform gives equal-sized images.
    batch_size, shuffle, drop_last : as :class:`minidl.data.DataLoader`.
    seed : seed of the loader's own host Generator (epoch orders and every sample's
        augmentation Generator); None draws from ``minidl.backend.host_rng()``.
    workers : decoding threads (>= 1); ``os.cpu_count()`` when None.
    prefetch : batches decoded ahead of the one being consumed (>= 1).
    mean, std : per-channel normalisation of pixels in [0, 1]: ImageNet's by default, what
        the pre-trained torchvision weights expect.

    Yields (x, y): x float (default dtype) of shape (B, 3, H, W), ``(pixel/255 - mean) / std``,
    and y int64 (B,), both on the active backend's device.
    """

    def __init__(self, dataset: ImageFolder, batch_size: int = 32, shuffle: bool = False,
                 seed: int | None = None, drop_last: bool = False, workers: int | None = 2,
                 prefetch: int = 2, mean=IMAGENET_MEAN, std=IMAGENET_STD, dtype=None):
        if not isinstance(dataset, ImageFolder):
            raise TypeError(f"ImageFolderLoader: dataset must be an ImageFolder, got "
                            f"{type(dataset).__name__}")
        workers = (os.cpu_count() or 1) if workers is None else workers
        for name, v in (("batch_size", batch_size), ("workers", workers),
                        ("prefetch", prefetch)):
            if isinstance(v, bool) or not isinstance(v, (int, numpy.integer)) or v < 1:
                raise ValueError(f"ImageFolderLoader: {name} must be an int >= 1, got {v!r}")
        self.dataset, self.batch_size = dataset, int(batch_size)
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.workers, self.prefetch, self.dtype = int(workers), int(prefetch), dtype
        self.mean = numpy.asarray(mean, numpy.float64).reshape(1, 1, 1, 3)
        self.std = numpy.asarray(std, numpy.float64).reshape(1, 1, 1, 3)
        if self.mean.size != 3 or self.std.size != 3 or numpy.any(self.std <= 0):
            raise ValueError(f"ImageFolderLoader: mean and std must be 3 numbers (std > 0), "
                             f"got {mean!r}, {std!r}")
        self._rng = None if seed is None else numpy.random.default_rng(seed)

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def _batch(self, items, indices) -> tuple:
        images = [numpy.asarray(im, dtype=numpy.uint8) for im, _ in items]
        shapes = {im.shape for im in images}
        if len(shapes) != 1 or len(next(iter(shapes))) != 3 or next(iter(shapes))[2] != 3:
            detail = ", ".join(f"{self.dataset.samples[i][0].name}: {im.shape}"
                               for i, im in zip(indices, images))
            raise ValueError(f"ImageFolderLoader: a batch needs images of one size (H, W, 3); "
                             f"give the ImageFolder a cropping transform; got {detail}")
        dtype = numpy.dtype(self.dtype or B.get_default_dtype())
        x = numpy.stack(images).astype(dtype)
        # one fused scale and shift: (x / 255 - mean) / std
        x = x * (1 / (255 * self.std)).astype(dtype) - (self.mean / self.std).astype(dtype)
        x = numpy.ascontiguousarray(x.transpose(0, 3, 1, 2))
        y = numpy.array([label for _, label in items], dtype=numpy.int64)
        return B.to_device(x), B.to_device(y)

    def __iter__(self):
        rng = B.host_rng() if self._rng is None else self._rng
        n = len(self.dataset)
        order = rng.permutation(n) if self.shuffle else numpy.arange(n)
        seeds = rng.integers(0, 2**63, size=n)   # drawn here, in order: thread-independent
        batches = [order[i:i + self.batch_size] for i in range(0, n, self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        pool = concurrent.futures.ThreadPoolExecutor(self.workers,
                                                     thread_name_prefix="minidl-decode")
        pending = collections.deque()

        def submit(b):
            idx = batches[b]
            pending.append((idx, [pool.submit(self.dataset.load, int(i),
                                              numpy.random.default_rng(int(seeds[i])))
                                  for i in idx]))
        try:
            for b in range(min(self.prefetch, len(batches))):
                submit(b)
            for b in range(len(batches)):
                idx, futures = pending.popleft()
                if b + self.prefetch < len(batches):
                    submit(b + self.prefetch)   # keep the threads busy while we compute
                yield self._batch([f.result() for f in futures], idx)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
