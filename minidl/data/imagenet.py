"""ImageNet-1k inference helpers: the 1000 class names and the evaluation preprocessing that
torchvision's and Keras's weights expect.

    image -> RGB -> resize so the SHORTER side is ``resize`` (bilinear, PIL) -> centre crop
    ``crop`` x ``crop`` -> float32 in [0, 1] -> (x - mean) / std per channel -> (3, crop, crop)

ResNet and AlexNet use resize 256 / crop 224; Inception-v3 uses 342 / 299
(:data:`PRESETS`).  Mean and std are ImageNet's channel statistics (0.485, 0.456, 0.406) /
(0.229, 0.224, 0.225).

The last step depends on the weights (``mode``, :func:`preset` picks it):

    "torch"  torchvision:      x / 255, then (x - mean) / std, RGB
    "caffe"  Keras ResNet50:   RGB -> BGR, x - (103.939, 116.779, 123.68) (BGR means), 0..255
                               (the original Caffe model's input; ``imagenet_utils`` "caffe")
    "tf"     Keras InceptionV3: x / 127.5 - 1, RGB, in [-1, 1] (``imagenet_utils`` "tf")

For Keras's weights minidl crops as for torchvision's (shorter side 256 -> 224 centre, 342 ->
299 for Inception-v3: TF-slim's 87.5 % central crop); Keras's own example instead resizes the
whole photo to 224x224 (299x299), which distorts its aspect ratio.

Class names are in torchvision's index order (the sorted WordNet ids n01440764 "tench" ...
n15075141 "toilet tissue"; Keras's files use the same order), one per line in
``imagenet_classes.txt``.
"""
from __future__ import annotations

import functools
from importlib import resources

import numpy

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "CAFFE_BGR_MEAN", "PRESETS", "MODES",
           "imagenet_classes", "preprocess", "preset", "resize_shorter", "center_crop"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PRESETS = {"default": (256, 224), "inception_v3": (342, 299)}
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)   # keras.applications.imagenet_utils, mode "caffe"
MODES = ("torch", "caffe", "tf")


def preset(arch: str, source: str = "torchvision") -> dict:
    """``preprocess`` keywords (resize, crop, mode) for ``arch``'s weights from ``source``
    ("torchvision" or "keras"): Keras's ResNet50 wants "caffe", its InceptionV3 "tf"."""
    if source not in ("torchvision", "keras"):
        raise ValueError(f"preset: source must be 'torchvision' or 'keras', got {source!r}")
    resize, crop = PRESETS.get(arch, PRESETS["default"])
    mode = "torch" if source == "torchvision" else ("tf" if arch == "inception_v3" else "caffe")
    return {"resize": resize, "crop": crop, "mode": mode}


@functools.lru_cache(maxsize=1)
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names; index i is the model's output i."""
    text = resources.files("minidl.data").joinpath("imagenet_classes.txt").read_text("utf-8")
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != 1000:
        raise RuntimeError(f"imagenet_classes.txt holds {len(names)} names, expected 1000")
    return names


def resize_shorter(image, size: int):
    """A PIL image resized (bilinear) so its shorter side is ``size``, keeping the aspect
    ratio (the longer side truncated, as torchvision's ``Resize(size)``)."""
    from PIL import Image
    w, h = image.size
    if min(w, h) == size:
        return image
    if w <= h:
        new = (size, int(size * h / w))
    else:
        new = (int(size * w / h), size)
    return image.resize(new, Image.Resampling.BILINEAR)


def center_crop(image, size: int):
    """The central ``size`` x ``size`` patch of a PIL image at least that large."""
    w, h = image.size
    if w < size or h < size:
        raise ValueError(f"center_crop: image {w}x{h} is smaller than the crop {size}x{size}")
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return image.crop((left, top, left + size, top + size))


def _open(path):
    """The image file ``path`` upright (its EXIF orientation applied), loaded."""
    from PIL import Image, ImageOps
    with Image.open(path) as im:
        return ImageOps.exif_transpose(im).copy()   # a copy: the file closes here


def to_rgb8(image):
    """A PIL image as 8-bit RGB.  16- and 32-bit grey images are scaled from their range
    (Pillow's own ``convert("RGB")`` clips them at 255: a 16-bit photo turns white) and float
    ones from [0, 1]; palette, CMYK, grey and alpha images go through Pillow's conversion."""
    from PIL import Image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "I;32", "F"):
        a = numpy.asarray(image, dtype=numpy.float64)
        top = 1.0 if image.mode == "F" else 65535.0 if image.mode.startswith("I;16") \
            or a.max() > 255 else 255.0
        grey = numpy.clip(numpy.rint(a / top * 255.0), 0, 255).astype(numpy.uint8)
        return Image.fromarray(grey).convert("RGB")
    return image.convert("RGB")


def preprocess(image, resize: int = 256, crop: int = 224, mean=IMAGENET_MEAN,
               std=IMAGENET_STD, mode: str = "torch") -> numpy.ndarray:
    """An image (path, PIL image, or uint8 array (H, W) / (H, W, 3)) as a normalised float32
    array of shape (3, crop, crop) on the host; stack a batch with ``numpy.stack``.  ``mode``
    (module doc): "torch" uses ``mean`` / ``std``; "caffe" (channels BGR) and "tf" ignore them.

    >>> x = preprocess("cat.jpg")                       # ResNet / AlexNet: (3, 224, 224)
    >>> x = preprocess("cat.jpg", *PRESETS["inception_v3"])   # (3, 299, 299)
    >>> x = preprocess("cat.jpg", **preset("resnet50", "keras"))   # BGR, mean-subtracted
    """
    from PIL import Image
    if isinstance(image, numpy.ndarray):
        if image.dtype != numpy.uint8 or image.ndim not in (2, 3):
            raise ValueError(f"preprocess: an array image must be uint8 (H, W) or (H, W, 3), "
                             f"got {image.dtype} {image.shape}")
        image = Image.fromarray(image)
    elif not isinstance(image, Image.Image):
        image = _open(image)
    if mode not in MODES:
        raise ValueError(f"preprocess: mode must be one of {', '.join(MODES)}, got {mode!r}")
    if crop > resize:
        raise ValueError(f"preprocess: crop ({crop}) must not exceed resize ({resize})")
    image = center_crop(resize_shorter(to_rgb8(image), resize), crop)
    x = numpy.asarray(image, dtype=numpy.float32)
    if mode == "caffe":
        x = x[..., ::-1] - numpy.asarray(CAFFE_BGR_MEAN, numpy.float32)
    elif mode == "tf":
        x = x / numpy.float32(127.5) - numpy.float32(1.0)
    else:
        x = x / numpy.float32(255.0)
        x = (x - numpy.asarray(mean, numpy.float32)) / numpy.asarray(std, numpy.float32)
    return numpy.ascontiguousarray(x.transpose(2, 0, 1))
