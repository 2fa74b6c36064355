"""Loading images as float32 grayscale arrays in [0, 1] on the active backend.

Colour is reduced with the Rec. 601 luma weights (the ones OpenCV's ``COLOR_RGB2GRAY`` and
Pillow's ``convert("L")`` use)::

    Y = 0.299 R + 0.587 G + 0.114 B

Alpha is ignored (not composited).  Files are decoded on the host with Pillow, EXIF rotation is
applied, and the result is moved to the active backend (``minidl.use_backend``).
"""
from __future__ import annotations

import os
import pathlib

import numpy

from minidl import backend as B

__all__ = ["load_image", "as_gray_float", "REC601"]

REC601 = (0.299, 0.587, 0.114)


def load_image(path_or_array, *, xp=None):
    """Load an image as grayscale ``float32`` in [0, 1].

    Parameters
    ----------
    path_or_array : str, os.PathLike or array
        A file Pillow can read (8/16-bit gray, RGB, RGBA, palette, ...; EXIF orientation is
        honoured), or an array accepted by :func:`as_gray_float`.
    xp : array namespace, optional
        Where to put the result; default: the active backend.

    Returns
    -------
    image : ndarray of shape (H, W), float32, values in [0, 1]

    Raises
    ------
    FileNotFoundError, ValueError (unreadable or not an image), TypeError (wrong argument type).
    """
    if isinstance(path_or_array, (str, os.PathLike)):
        host = _read_file(pathlib.Path(path_or_array))
        return _to_xp(host, xp)
    return as_gray_float(path_or_array, xp=xp)


def _read_file(path: pathlib.Path) -> numpy.ndarray:
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {str(path)!r}")
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            return _pil_to_gray(im)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"cannot read {str(path)!r} as an image: {exc}") from exc


def _pil_to_gray(im) -> numpy.ndarray:
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        a = numpy.asarray(im, dtype=numpy.float64)
        return (a / 65535.0).astype(numpy.float32)
    if mode in ("I", "I;32"):
        a = numpy.asarray(im, dtype=numpy.float64)
        top = 65535.0 if a.max() > 255 else 255.0
        return numpy.clip(a / top, 0, 1).astype(numpy.float32)
    if mode == "F":
        return numpy.asarray(im, dtype=numpy.float32)
    if mode == "1":
        return numpy.asarray(im.convert("L"), dtype=numpy.float32) / 255.0
    if mode == "L":
        return numpy.asarray(im, dtype=numpy.float32) / 255.0
    if mode in ("LA", "La"):
        return numpy.asarray(im.convert("L"), dtype=numpy.float32) / 255.0
    # P (palette), RGB, RGBA, CMYK, YCbCr, ... -> RGB, then our documented luma weights
    rgb = numpy.asarray(im.convert("RGB"), dtype=numpy.float32) / 255.0
    return _luma(rgb, numpy)


def _luma(rgb, xp):
    w = xp.asarray(numpy.asarray(REC601, dtype=numpy.float32))
    return (rgb[..., 0] * w[0] + rgb[..., 1] * w[1] + rgb[..., 2] * w[2]).astype(xp.float32)


def _to_xp(host: numpy.ndarray, xp):
    if xp is None:
        return B.to_device(numpy.ascontiguousarray(host, dtype=numpy.float32))
    return B._backend_for_xp(xp).asarray(numpy.ascontiguousarray(host, dtype=numpy.float32))


def as_gray_float(image, *, xp=None):
    """An array as grayscale ``float32`` in [0, 1].

    ``uint8`` is divided by 255, ``uint16`` by 65535, floats are kept as they are (assumed in
    [0, 1]), bools become 0/1.  A 3-D array of shape (H, W, 3) or (H, W, 4) is reduced with the
    Rec. 601 weights (alpha ignored); (H, W, 1) is squeezed.  Arrays of any backend are accepted;
    the result stays on the array's backend unless ``xp`` is given.
    """
    if not (B.is_array(image) or isinstance(image, (list, tuple))):
        raise TypeError("`image` must be a file path or an array of shape (H, W) or (H, W, C), "
                        f"got {type(image).__name__}")
    if isinstance(image, (list, tuple)):
        image = numpy.asarray(image)
    if xp is not None and B.backend_of(image).xp is not xp:
        image = B._backend_for_xp(xp).asarray(B.to_host(image))
    a = image
    ax = B.get_array_module(a)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 3 and a.shape[2] not in (3, 4) or a.ndim not in (2, 3):
        raise ValueError("`image` must be 2-D (H, W) or 3-D (H, W, 3|4), "
                         f"got shape {tuple(a.shape)}")
    if min(a.shape[:2]) < 1:
        raise ValueError(f"`image` must not be empty, got shape {tuple(a.shape)}")
    dt = numpy.dtype(a.dtype)
    if dt == numpy.uint8:
        a = a.astype(ax.float32) / 255.0
    elif dt == numpy.uint16:
        a = a.astype(ax.float32) / 65535.0
    elif dt.kind in "fb":
        a = a.astype(ax.float32)
    elif dt.kind in "iu":
        a = a.astype(ax.float32) / 255.0
    else:
        raise TypeError(f"`image` must have a numeric dtype, got {dt}")
    if a.ndim == 3:
        a = _luma(a[..., :3], ax)
    return ax.ascontiguousarray(a.astype(ax.float32))
