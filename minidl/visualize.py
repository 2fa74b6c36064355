"""Looking inside a trained CNN: its learned filters, its feature maps, and which input pixels
its decision depends on.

* :func:`filter_grid` -- first-layer filters ``(OC, C, KH, KW)`` as one picture.  Each filter
  is scaled on its own, *symmetrically around 0*: grey (128) is a zero weight, white the
  filter's largest positive weight, black its most negative one (``0.5 + 0.5 w / max|w|``),
  so that an edge detector shows as a light stripe beside a dark one.  One channel is drawn
  in grey, three as RGB.
* :func:`feature_map_grid` -- the maps ``(C, H, W)`` one layer computes for one image, each
  min-max scaled on its own (dark = weak response, white = strong).
* :func:`input_gradient` / :func:`saliency` -- Simonyan et al. 2014, "Deep inside
  convolutional networks": the gradient of the class score ``y_c`` (the logit, before the
  softmax) with respect to the input; ``saliency`` is ``max_channels |d y_c / d x|``, the
  pixels where a small change moves the score most.
* :func:`grad_cam` -- Selvaraju et al. 2017: the maps ``A_k`` of a chosen layer weighted by
  the mean gradient of ``y_c`` over each map, summed and rectified,
  ``relu(sum_k mean(d y_c / d A_k) A_k)``: a coarse picture of *where* the evidence is.
* :func:`capture` -- the outputs of named sub-modules during one forward pass.

Pictures are host ``numpy.uint8`` arrays (H, W) or (H, W, 3); :func:`save_png` writes one.
Inputs may live on any backend (``xp``); the model should be in eval mode (batch norm's
running statistics, no dropout) so that the picture does not depend on the batch.
"""
from __future__ import annotations

import contextlib
import math
import pathlib

import numpy

from minidl import backend as B
from minidl.autograd import Tensor, enable_grad, no_grad

__all__ = ["filter_grid", "feature_map_grid", "input_gradient", "saliency", "grad_cam",
           "capture", "heat_overlay", "save_png", "tile", "predict"]


def tile(tiles, cols: int | None = None, border: int = 1, fill=255) -> numpy.ndarray:
    """Equal-sized host tiles (N, h, w) or (N, h, w, 3) uint8 on a grid of ``cols`` columns
    (default ceil(sqrt(N))), separated and framed by ``border`` pixels of ``fill``."""
    tiles = numpy.asarray(tiles)
    n, h, w = tiles.shape[:3]
    cols = cols or max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / cols))
    shape = (rows * (h + border) + border, cols * (w + border) + border) + tiles.shape[3:]
    out = numpy.full(shape, fill, numpy.uint8)
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = border + r * (h + border), border + c * (w + border)
        out[y:y + h, x:x + w] = tiles[i]
    return out


def _zoom(a, zoom: int):
    """Nearest-neighbour enlargement of the two axes after the first: each value a block."""
    return a.repeat(zoom, axis=1).repeat(zoom, axis=2) if zoom > 1 else a


def filter_grid(W, zoom: int = 8, border: int = 2, cols: int | None = None) -> numpy.ndarray:
    """The filters ``W`` (OC, C, KH, KW), C = 1 or 3, of any backend and float dtype, as one
    uint8 picture: (H, W) grey for C = 1, (H, W, 3) RGB for C = 3.

    Each filter ``f`` is drawn as ``0.5 + 0.5 f / max|f|`` (0 -> grey 128; an all-zero filter
    stays grey), each weight a ``zoom`` x ``zoom`` block, the filters ``border`` white pixels
    apart on ``cols`` columns (default ceil(sqrt(OC)))."""
    if getattr(W, "ndim", None) != 4:
        raise ValueError(f"filter_grid: W must be (out_channels, in_channels, KH, KW), got "
                         f"shape {getattr(W, 'shape', type(W).__name__)}")
    W = numpy.asarray(B.to_host(W), dtype=numpy.float64)
    oc, c = W.shape[:2]
    if c not in (1, 3):
        raise ValueError(f"filter_grid: W must have 1 (grey) or 3 (RGB) input channels, got "
                         f"{c} (shape {W.shape}); pass W[:, :1] to see one channel")
    if not isinstance(zoom, int) or zoom < 1:
        raise ValueError(f"filter_grid: zoom must be a positive int, got {zoom!r}")
    peak = numpy.abs(W).reshape(oc, -1).max(axis=1).reshape(oc, 1, 1, 1)
    scaled = 0.5 + 0.5 * W / numpy.where(peak > 0, peak, 1.0)
    img = numpy.clip(numpy.rint(scaled * 255), 0, 255).astype(numpy.uint8)
    img = img[:, 0] if c == 1 else img.transpose(0, 2, 3, 1)     # (OC, KH, KW[, 3])
    return tile(_zoom(img, zoom), cols, border)


def feature_map_grid(maps, zoom: int = 1, border: int = 1, cols: int | None = None,
                     max_maps: int | None = None) -> numpy.ndarray:
    """Feature maps (C, H, W) of one image (any backend) as a grey uint8 grid: each map
    min-max scaled on its own (a constant map is black), at most ``max_maps`` of them."""
    if getattr(maps, "ndim", None) != 3:
        raise ValueError(f"feature_map_grid: maps must be (C, H, W) for one image, got shape "
                         f"{getattr(maps, 'shape', type(maps).__name__)}")
    m = numpy.asarray(B.to_host(maps), dtype=numpy.float64)[:max_maps]
    lo = m.min(axis=(1, 2), keepdims=True)
    span = m.max(axis=(1, 2), keepdims=True) - lo
    scaled = (m - lo) / numpy.where(span > 0, span, 1.0)
    img = numpy.clip(numpy.rint(scaled * 255), 0, 255).astype(numpy.uint8)
    return tile(_zoom(img, zoom), cols, border)


def _batch_of_one(x):
    if getattr(x, "ndim", None) not in (3, 4) or (x.ndim == 4 and x.shape[0] != 1):
        raise ValueError(f"expected one image (C, H, W) or (1, C, H, W), got shape "
                         f"{getattr(x, 'shape', type(x).__name__)}")
    return x if x.ndim == 4 else x[None]


def _score_backward(model, x, class_index, retain=()):
    """Forward ``x`` (1, C, H, W) with gradients on, backpropagate the one-hot of
    ``class_index`` from the logits; returns (input tensor, logits array)."""
    t = Tensor(x, requires_grad=True)
    params = model.parameters() if hasattr(model, "parameters") else []
    flags = [q.requires_grad for q in params]
    for q in params:    # only the input's gradient is wanted: leave the weights' .grad alone
        q.requires_grad = False
    try:
        logits = _forward_backward(model, t, class_index)
    finally:
        for q, f in zip(params, flags):
            q.requires_grad = f
    return t, logits


def _forward_backward(model, t, class_index):
    with enable_grad():
        logits = model(t)
        if logits.ndim != 2 or logits.shape[0] != 1:
            raise ValueError(f"the model must return logits (1, classes), got shape "
                             f"{tuple(logits.shape)}")
        n = int(logits.shape[1])
        if not isinstance(class_index, (int, numpy.integer)) or not 0 <= class_index < n:
            raise ValueError(f"class_index must be an int in [0, {n}), got {class_index!r}")
        xp = B.get_array_module(logits.data)
        seed = xp.zeros(logits.shape, dtype=logits.data.dtype)
        seed[0, int(class_index)] = 1
        logits.backward(seed)
    return logits.data


def input_gradient(model, x, class_index: int):
    """``d y_c / d x`` (C, H, W) in ``x``'s dtype and backend: the gradient of logit
    ``class_index`` for one image ``x`` (C, H, W) or (1, C, H, W)."""
    x = _batch_of_one(x)
    t, _ = _score_backward(model, x, class_index)
    return t.grad[0]


def saliency(model, x, class_index: int):
    """The class saliency map (H, W): ``max over channels of |d y_c / d x|`` for one image
    ``x`` (C, H, W) or (1, C, H, W) (Simonyan et al. 2014)."""
    g = input_gradient(model, x, class_index)
    return B.get_array_module(g).abs(g).max(axis=0)


@contextlib.contextmanager
def capture(model, names, retain_grad: bool = False):
    """Record the outputs of the sub-modules ``names`` (as in ``model.named_modules()``)
    while the block runs: yields a dict name -> Tensor, filled by each forward pass (the
    last pass wins).  With ``retain_grad`` the tensors keep their ``.grad`` after backward.

    >>> with capture(model, ["layer1"]) as seen:      # doctest: +SKIP
    ...     model(x)
    >>> seen["layer1"].shape                          # doctest: +SKIP
    """
    modules = dict(model.named_modules())
    missing = [n for n in names if n not in modules]
    if missing:
        raise ValueError(f"capture: no sub-module named {missing} (known: "
                         f"{[n for n in modules if n][:30]})")
    seen, hooked = {}, []
    for name in names:
        m = modules[name]
        original = m.forward

        def wrapped(*a, _name=name, _orig=original, **k):
            out = _orig(*a, **k)
            if retain_grad and isinstance(out, Tensor) and out.requires_grad:
                out.retain_grad()
            seen[_name] = out
            return out
        object.__setattr__(m, "forward", wrapped)   # an instance attribute shadows the method
        hooked.append(m)
    try:
        yield seen
    finally:
        for m in hooked:
            object.__delattr__(m, "forward")


def grad_cam(model, x, class_index: int, layer: str):
    """Grad-CAM (H_l, W_l) on the host, float64 in [0, 1] (all zeros when nothing speaks for
    the class): ``relu(sum_k alpha_k A_k)``, ``alpha_k`` the mean over the map of
    ``d y_c / d A_k``, ``A`` the output (1, K, H_l, W_l) of sub-module ``layer``."""
    x = _batch_of_one(x)
    with capture(model, [layer], retain_grad=True) as seen:
        _score_backward(model, x, class_index)
    A = seen[layer]
    if A.ndim != 4 or A.grad is None:
        raise ValueError(f"grad_cam: layer {layer!r} must output maps (1, K, H, W) that the "
                         f"class score depends on, got shape {tuple(A.shape)}")
    a, g = (numpy.asarray(B.to_host(v), dtype=numpy.float64)[0] for v in (A.data, A.grad))
    cam = numpy.maximum((g.mean(axis=(1, 2))[:, None, None] * a).sum(axis=0), 0)
    peak = cam.max()
    return cam / peak if peak > 0 else cam


def heat_overlay(image, heat, alpha: float = 0.6) -> numpy.ndarray:
    """An RGB uint8 picture: the grey or RGB ``image`` (H, W[, 3], floats in [0, 1] or uint8)
    dimmed, with ``heat`` (h, w) >= 0 (resized to H, W, scaled to its max) painted in red-yellow
    on top; ``alpha`` is the heat's opacity where it is largest."""
    from PIL import Image
    img = numpy.asarray(B.to_host(image))
    img = img.astype(numpy.float64) / 255 if img.dtype == numpy.uint8 else img.astype(float)
    img = numpy.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img
    H, W = img.shape[:2]
    h = numpy.asarray(B.to_host(heat), dtype=numpy.float64)
    h = h / h.max() if h.max() > 0 else h
    h = numpy.asarray(Image.fromarray(h.astype(numpy.float32)).resize(
        (W, H), Image.Resampling.BILINEAR), dtype=numpy.float64).clip(0, 1)
    colour = numpy.stack([numpy.ones_like(h), h, numpy.zeros_like(h)], axis=2)  # red -> yellow
    a = (alpha * h)[..., None]
    out = (1 - a) * (0.3 + 0.7 * img) + a * colour
    return numpy.clip(numpy.rint(out * 255), 0, 255).astype(numpy.uint8)


def save_png(picture, path, scale: int = 1) -> pathlib.Path:
    """Write a uint8 picture (H, W) or (H, W, 3) as a PNG, each pixel ``scale`` x ``scale``
    (nearest neighbour: the pixels stay sharp)."""
    from PIL import Image
    img = Image.fromarray(numpy.asarray(picture, dtype=numpy.uint8))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
    path = pathlib.Path(path)
    img.save(path)
    return path


def predict(model, x):
    """Logits of one image (C, H, W) or (1, C, H, W) as a host float64 vector, no gradients."""
    with no_grad():
        out = model(Tensor(_batch_of_one(x)))
    return numpy.asarray(B.to_host(out.data), dtype=numpy.float64)[0]
