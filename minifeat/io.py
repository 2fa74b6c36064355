"""Images into minifeat: one input contract, enforced at every public entry point.

Every detector and descriptor that takes an image (``SIFT.detect``/``compute``/
``detect_and_compute``, ``DenseSIFT.compute``, ``edges_canny``, ``corner_harris``,
``corner_shi_tomasi``, ``structure_tensor``, ``blob_log``/``blob_dog``/``blob_doh``) reads it
through :func:`as_image`, which returns a float32 grayscale array (H, W) in [0, 1] on the
array's backend.  The contract:

* **File paths** (``str`` or ``pathlib.Path``) are accepted wherever an image is: decoded by
  :func:`load_image` (Pillow; 8/16-bit grey, RGB(A), palette, CMYK, EXIF orientation).
* **Integers are scaled by their dtype's range**: uint8 / 255, uint16 / 65535; bool is 0/1.
  Other integer dtypes (int8 ... int64, uint32, uint64) have no image range and are refused
  (TypeError) unless ``max_value`` says what white is.
* **uint16 data using only 12 bits or fewer** (maximum <= 4095, e.g. a 12-bit sensor) is
  still scaled by 65535 -- the image is then very dark and SIFT may find nothing -- and a
  :class:`LowBitDepthWarning` (a ``UserWarning``) says so; pass ``max_value=4095`` (or
  ``2**bits - 1``) to scale by the real bit depth.  Nothing is guessed silently.
* **Floats are expected in [0, 1]**: a float image whose maximum is above 1.5 (e.g. 0..255) is
  refused with a ValueError suggesting ``image / 255``, unless ``max_value`` is given (the value
  meaning white: the array is divided by it; it overrides the dtype rules above).
* **Non-finite pixels** (NaN, inf) are refused with their count (ValueError), unless
  ``nonfinite="zero"`` sets them to 0.
* **Colour**: (H, W, 3) or (H, W, 4) arrays are reduced with the Rec. 601 luma weights, alpha
  ignored (not composited); ``channel_order="bgr"`` for arrays from OpenCV (``cv2.imread``),
  which are BGR(A); the default is ``"rgb"``.  (H, W, 1) is squeezed.
* **Tiny and constant images** are valid: the detectors return empty results (0 keypoints,
  descriptors of shape (0, 128), no edges, no corners, no blobs) rather than errors.

The checks are cheap: one ``isfinite(...).all()`` and one ``max()`` over float input, one
``max()`` over uint16 input; a float32 (H, W) array in [0, 1] is returned as it is, not copied.

The linear filters (``gaussian_blur``, ``image_gradients``, ``gradient_sobel`` ...) are not
detectors: they take any real array as it is (scaling commutes with them, and they run on
intermediate arrays), and accept file paths through the same contract.

Colour is reduced with the Rec. 601 luma weights (the ones OpenCV's ``COLOR_RGB2GRAY`` and
Pillow's ``convert("L")`` use)::

    Y = 0.299 R + 0.587 G + 0.114 B
"""
from __future__ import annotations

import math
import os
import pathlib
import warnings

import numpy

from minidl import backend as B

__all__ = ["load_image", "as_image", "as_gray_float", "as_array2d", "is_path", "LowBitDepthWarning",
           "REC601", "CHANNEL_ORDERS", "NONFINITE"]

REC601 = (0.299, 0.587, 0.114)
CHANNEL_ORDERS = ("rgb", "bgr")
NONFINITE = ("raise", "zero")
FLOAT_MAX = 1.5        # a float image whose maximum exceeds this is not in [0, 1]
LOW_BITS_MAX = 4095    # uint16 data at most this uses 12 bits or fewer


class LowBitDepthWarning(UserWarning):
    """A uint16 image uses only 12 bits or fewer (maximum <= 4095): scaled by 65535 it is very
    dark.  Pass ``max_value=4095`` (or ``2**bits - 1``) to scale by its real bit depth."""


def is_path(obj) -> bool:
    """Whether ``obj`` names a file (``str`` or ``os.PathLike`` such as ``pathlib.Path``)."""
    return isinstance(obj, (str, os.PathLike))


def load_image(path_or_array, *, xp=None, **options):
    """Load an image as grayscale ``float32`` in [0, 1].

    Parameters
    ----------
    path_or_array : str, os.PathLike or array
        A file Pillow can read (8/16-bit gray, RGB, RGBA, palette, ...; EXIF orientation is
        honoured), or an array accepted by :func:`as_image`.
    xp : array namespace, optional
        Where to put the result; default: the active backend for files, the array's own
        backend for arrays.
    **options : ``max_value``, ``channel_order``, ``nonfinite``, ``name``: see :func:`as_image`.

    Returns
    -------
    image : ndarray of shape (H, W), float32, values in [0, 1]

    Raises
    ------
    FileNotFoundError, ValueError (unreadable or not an image), TypeError (wrong argument type).
    """
    return as_image(path_or_array, xp=xp, **options)


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


def as_image(image, *, name: str = "image", max_value=None, channel_order: str = "rgb",
             nonfinite: str = "raise", xp=None, keep_float64: bool = False):
    """``image`` (a file path or an array) as grayscale float32 (H, W) in [0, 1], under the
    module's input contract (see the module docstring).

    Parameters
    ----------
    image : str, os.PathLike, or array (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) of bool,
        uint8, uint16 or float (any backend), or a nested list of numbers.
    name : str, the argument's name in error messages.
    max_value : float > 0 or None: the value meaning white; the array is divided by it
        (overrides the dtype rules and the [0, 1] check for floats).  None: by the dtype.
    channel_order : "rgb" (default) or "bgr" (arrays from OpenCV), for colour arrays.
    nonfinite : "raise" (default: ValueError with the count) or "zero" (NaN, inf -> 0).
    xp : array namespace or None: where the result goes (default: the array's backend; for a
        file, the active backend).
    keep_float64 : bool, for the detectors that compute in the input's precision (Canny,
        Harris, blobs): a float64 array stays float64.

    Returns
    -------
    ndarray (H, W) float32 (float64 for float64 input with ``keep_float64``), C-contiguous;
    ``image`` itself when it already is one in range.

    Raises
    ------
    TypeError : not a path or array, or a dtype without an image range (and no max_value).
    ValueError : bad shape or empty, float values above 1.5 (without max_value), non-finite
        values (with nonfinite="raise"), bad option values.
    FileNotFoundError : a path that is not a file.
    LowBitDepthWarning (warning) : uint16 data whose maximum is <= 4095, without max_value.
    """
    if channel_order not in CHANNEL_ORDERS:
        raise ValueError(f"`channel_order` must be 'rgb' or 'bgr', got {channel_order!r}")
    if nonfinite not in NONFINITE:
        raise ValueError(f"`nonfinite` must be 'raise' or 'zero', got {nonfinite!r}")
    if max_value is not None:
        if isinstance(max_value, bool) or not isinstance(max_value, (int, float, numpy.number)) \
                or not math.isfinite(max_value) or max_value <= 0:
            raise ValueError(f"`max_value` must be a finite number > 0 or None, "
                             f"got {max_value!r}")
    if is_path(image):
        host = _read_file(pathlib.Path(image))
        if max_value is not None:
            host = _divided(host, float(max_value))
        a = _to_xp(host, xp)
        return _check_values(a, name, max_value is not None, nonfinite)
    if not (B.is_array(image) or isinstance(image, (list, tuple))):
        raise TypeError(f"`{name}` must be a file path or an array of shape (H, W) or "
                        f"(H, W, C), got {type(image).__name__} (a file path is a str or a "
                        "pathlib.Path)")
    if isinstance(image, (list, tuple)):
        image = numpy.asarray(image)
    if xp is not None and B.backend_of(image).xp is not xp:
        image = B._backend_for_xp(xp).asarray(B.to_host(image))
    a = image
    ax = B.get_array_module(a)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim == 3 and a.shape[2] not in (3, 4) or a.ndim not in (2, 3):
        raise ValueError(f"`{name}` must be 2-D (H, W) or 3-D (H, W, 3|4), "
                         f"got shape {tuple(a.shape)}")
    if min(a.shape[:2]) < 1:
        raise ValueError(f"`{name}` must not be empty, got shape {tuple(a.shape)}")
    a = scale_to_unit(a, name, max_value=max_value, nonfinite=nonfinite,
                      keep_float64=keep_float64)
    if a.ndim == 3:
        rgb = a[..., 2::-1] if channel_order == "bgr" else a[..., :3]
        a = _luma(rgb, ax)
    return a if a.flags.c_contiguous else ax.ascontiguousarray(a)


def scale_to_unit(a, name: str = "image", *, max_value=None, nonfinite: str = "raise",
                  keep_float64: bool = False):
    """The values of array ``a`` (any shape) as float32 in [0, 1] by the input contract's dtype
    and value rules (no shape or colour handling): the shared core of :func:`as_image`, for
    batches such as ``DenseSIFT.compute``'s (N, H, W).  ``a`` itself when already float32 in
    range (no copy)."""
    xp = B.get_array_module(a)
    dt = numpy.dtype(a.dtype)
    if max_value is None:
        if dt == numpy.uint8:
            return _divided(a, 255.0)
        if dt == numpy.uint16:
            top = int(a.max())
            if 0 < top <= LOW_BITS_MAX:
                warnings.warn(
                    f"`{name}` is uint16 but its largest value is {top} (12 bits or fewer): "
                    "scaled by 65535 it is very dark and detectors may find nothing; pass "
                    "max_value=4095 (or 2**bits - 1) to scale by its real bit depth",
                    LowBitDepthWarning, stacklevel=3)
            return _divided(a, 65535.0)
        if dt.kind == "b":
            return a.astype(xp.float32)
        if dt.kind in "iu":
            raise TypeError(f"`{name}` has dtype {dt}, which has no image value range (expected "
                            "uint8, uint16, bool or float in [0, 1]): convert it, e.g. "
                            "image.astype(numpy.uint8) for 0..255 data, or pass max_value")
    if dt.kind not in "biuf":
        raise TypeError(f"`{name}` must have a real numeric dtype, got {dt}")
    a = a.astype(xp.float64 if keep_float64 and dt == numpy.float64 else xp.float32, copy=False)
    if dt.kind == "f":
        a = _check_values(a, name, max_value is not None, nonfinite)
    if max_value is not None:
        a = _divided(a, float(max_value))
    return a


def _divided(a, by: float):
    """A new array ``a / by``, float32 (float64 kept), in one allocation."""
    xp = B.get_array_module(a)
    out = a.astype(xp.float64 if a.dtype == numpy.float64 else xp.float32)  # a copy
    out /= by
    return out


def _check_values(a, name, scaled: bool, nonfinite: str):
    """Refuse (or zero) non-finite values; refuse floats above FLOAT_MAX unless ``scaled``."""
    xp = B.get_array_module(a)
    if not bool(xp.isfinite(a).all()):
        if nonfinite == "zero":
            a = xp.where(xp.isfinite(a), a, a.dtype.type(0))
        else:
            bad = int(a.size - int(xp.isfinite(a).sum()))
            raise ValueError(f"`{name}` has {bad} non-finite pixel value(s) (NaN or inf) of "
                             f"{a.size}; clean them, or pass nonfinite='zero' to set them to 0")
    if not scaled and a.size:
        top = float(a.max())
        if top > FLOAT_MAX:
            raise ValueError(f"`{name}` is a float image with values up to {top:g}, expected "
                             f"[0, 1]: pass image / 255 for 8-bit data (image / 65535 for "
                             f"16-bit), or max_value=255")
    return a


def as_array2d(array, name: str = "image"):
    """``(xp, array)``: a real 2-D array (H, W) of any backend as floating point, for the
    linear filters and for non-image arrays (e.g. a corner response).  No value contract:
    values are kept as they are (integers become float32 unscaled, NaN propagates).  A file
    path is read by :func:`as_image`."""
    if is_path(array):
        array = as_image(array, name=name)
    if not hasattr(array, "ndim"):
        raise TypeError(f"`{name}` must be a file path or an array of shape (H, W), "
                        f"got {type(array).__name__}")
    xp = B.get_array_module(array)
    if array.ndim != 2:
        raise ValueError(f"`{name}` must be 2-D (H, W) grayscale, got shape "
                         f"{tuple(array.shape)}")
    if min(array.shape) < 1:
        raise ValueError(f"`{name}` must not be empty, got shape {tuple(array.shape)}")
    if array.dtype.kind not in "fiub":
        raise TypeError(f"`{name}` must have a real numeric dtype, got {array.dtype}")
    if array.dtype.kind != "f":
        array = array.astype(xp.float32)
    return xp, array


def as_gray_float(image, *, xp=None, **options):
    """The same as :func:`as_image` (its former name)."""
    return as_image(image, xp=xp, **options)
