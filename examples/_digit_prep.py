"""A photo of one handwritten digit -> a 28x28 image prepared as MNIST's digits were made.

MNIST's digits are white ink on black, the ink's bounding box fitted in 20x20 pixels (aspect
ratio kept, anti-aliased), centred by its centre of mass in a 28x28 frame.  A photo is grey
paper under uneven light, with sensor noise, a smudge or two and the digit anywhere.  So:

1. **Flatten the background**: fit a smooth surface (a quadratic in x and y) to the paper,
   refitting on the pixels not taken for ink, so that a lighting gradient or vignetting
   disappears; the ink is what departs from it.  Its side (darker or lighter than the paper)
   is that of the minority class: paper covers most of a photo of one digit.
2. **Threshold** the ink strength (lightly smoothed against noise) by Otsu's method (the level
   that best separates two classes of its histogram).
3. **Keep the largest ink component** (8-connected, ``scipy.ndimage.label``), preferring one
   that does not touch the border (a shadow, the paper's edge), and the pieces of the digit
   beside it (a broken stroke): components at least a fifth of its size near its box.
4. **Even the strokes** to MNIST's width (its thinner parts about 0.10 of the digit's longer
   side, as measured on MNIST's test set: grey erosion or dilation with a disk), so that a
   felt pen or a bold font reads as MNIST's pens did.
5. **Fit its box in 20x20**, keeping the aspect ratio; the grey levels are the ink strength
   scaled so that the strokes' core is 1, as in MNIST.
6. **Centre it by its centre of mass** in 28x28.

Library-free: NumPy, Pillow (resizing) and scipy.ndimage (labels, a Gaussian blur).
"""
from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

__all__ = ["prepare_gray", "otsu_threshold", "NoDigitFound"]


class NoDigitFound(ValueError):
    """The image holds no ink that stands out of the paper."""


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """The threshold that maximises the between-class variance of ``values``' histogram
    (Otsu, 1979); values above it form one class."""
    v = np.asarray(values, dtype=np.float64).ravel()
    lo, hi = float(v.min()), float(v.max())
    if hi <= lo:
        return lo
    hist, edges = np.histogram(v, bins=bins, range=(lo, hi))
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    mu0 = m0 / np.maximum(w0, 1)
    mu1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mu0 - mu1) ** 2
    return float(edges[1:][np.argmax(between[:-1])])


def _surface_basis(shape, step):
    h, w = shape
    yy, xx = np.mgrid[0:h:step, 0:w:step]
    y, x = yy.ravel() / max(h - 1, 1) - 0.5, xx.ravel() / max(w - 1, 1) - 0.5
    return np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1), (yy, xx)


def _paper(gray: np.ndarray):
    """(the fitted paper surface (H, W), ink mask, the ink's sign: +1 lighter, -1 darker)."""
    h, w = gray.shape
    step = max(1, int(np.sqrt(h * w / 40000)))          # fit on about 40k pixels
    A, (yy, xx) = _surface_basis(gray.shape, step)
    sample = gray[::step, ::step].ravel()
    keep = np.ones(sample.shape, dtype=bool)
    sign = -1.0
    for _ in range(4):   # fit, call the minority class ink, refit on the rest
        coef = np.linalg.lstsq(A[keep], sample[keep], rcond=None)[0]
        r = sample - A @ coef
        t = otsu_threshold(r)
        above = r > t
        sign = 1.0 if above.sum() < above.size / 2 else -1.0
        ink = above if sign > 0 else ~above
        # the anti-aliased rims of the strokes are not paper either: leave out a margin
        margin = ndimage.binary_dilation(ink.reshape(yy.shape), iterations=2).ravel()
        if margin.all():
            break
        keep = ~margin
    A_full, _ = _surface_basis(gray.shape, 1)
    surface = (A_full @ coef).reshape(h, w)
    return surface, sign


def _components(mask: np.ndarray) -> np.ndarray:
    """The digit's mask: the largest 8-connected component (not touching the border when one
    such is at least a third of the largest) and the pieces beside it."""
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if n == 0:
        raise NoDigitFound("no ink")
    sizes = np.bincount(labels.ravel())[1:]
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    inner = np.array([k + 1 not in border for k in range(n)])
    best = int(np.argmax(sizes))
    if not inner[best] and inner.any() and sizes[inner].max() >= sizes[best] / 3:
        best = int(np.flatnonzero(inner)[np.argmax(sizes[inner])])
    boxes = ndimage.find_objects(labels)
    r, c = boxes[best]
    h, w = r.stop - r.start, c.stop - c.start
    near = (slice(r.start - h // 4, r.stop + h // 4), slice(c.start - w // 4, c.stop + w // 4))
    keep = np.zeros(n + 1, dtype=bool)
    keep[best + 1] = True
    for k, (rk, ck) in enumerate(boxes):
        if sizes[k] >= sizes[best] / 5 and inner[k] and rk.start >= near[0].start and \
                rk.stop <= near[0].stop and ck.start >= near[1].start and ck.stop <= near[1].stop:
            keep[k + 1] = True
    return keep[labels]


def _disk(radius: int) -> np.ndarray:
    yy, xx = np.mgrid[-radius:radius + 1, -radius:radius + 1]
    return xx * xx + yy * yy <= radius * radius + radius


def stroke_width(mask: np.ndarray) -> float:
    """The width of ``mask``'s thinner strokes in pixels: twice the distance to the background
    along their ridges (the local maxima of the distance transform), its QUANTILE-th
    percentile, so that thinning a font of thick and thin strokes keeps the thin ones."""
    edt = ndimage.distance_transform_edt(mask)
    ridge = mask & (edt >= ndimage.maximum_filter(edt, 3))
    return 2.0 * float(np.percentile(edt[ridge], QUANTILE)) if ridge.any() else 0.0


def _even_strokes(level: np.ndarray, digit: np.ndarray) -> np.ndarray:
    """``level`` with its strokes thinned or thickened (grey erosion or dilation with a disk)
    to MNIST's width (STROKE of the ink's longer side, 2 of 20 pixels at the thin parts), so
    that a felt pen and a bold font read as a pencil does."""
    long_side = max(np.ptp(np.nonzero(digit)[0]), np.ptp(np.nonzero(digit)[1])) + 1
    w, target = stroke_width(digit), STROKE * long_side
    radius = int(round(abs(w - target) / 2))
    if radius < 1 or 0.8 * target <= w <= 1.25 * target:
        return level
    if w > target:
        thinner = ndimage.grey_erosion(level, footprint=_disk(radius))
        # a stroke much thinner than the rest (a serif) may go; the digit must not
        return thinner if (thinner > 0.5).sum() > 0.2 * (level > 0.5).sum() else level
    return ndimage.grey_dilation(level, footprint=_disk(radius))


QUANTILE = 25      # of the ridge widths: the thinner parts (a bold serif font thick and thin)
STROKE = 0.10      # MNIST: a thin part of a stroke (QUANTILE) over the longer side, median
MAX_SIDE = 800      # larger photos are first reduced (box filter): a digit needs no more


def prepare_gray(gray: np.ndarray) -> np.ndarray:
    """A float32 (28, 28) image in [0, 1], white ink on black, from ``gray`` (H, W) grey
    levels in [0, 1] of a photo or scan of one digit (dark ink on light paper or light on
    dark).  Raises :class:`NoDigitFound` when no ink stands out of the paper."""
    gray = np.asarray(gray, dtype=np.float64)
    if gray.ndim != 2 or min(gray.shape) < 4:
        raise NoDigitFound(f"the image is {gray.shape}, too small for a digit")
    if max(gray.shape) > MAX_SIDE:
        f = MAX_SIDE / max(gray.shape)
        size = (max(4, round(gray.shape[1] * f)), max(4, round(gray.shape[0] * f)))
        gray = np.asarray(Image.fromarray(gray.astype(np.float32)).resize(
            size, Image.Resampling.BOX), dtype=np.float64)
    surface, sign = _paper(gray)
    strength = sign * (gray - surface)                     # the ink's departure from paper
    # smooth against sensor noise at the scale of a thin stroke (a 1/100 of the image)
    sigma = max(0.5, min(gray.shape) / 200)
    smooth = ndimage.gaussian_filter(strength, sigma)
    t = otsu_threshold(smooth)
    mask = smooth > t
    paper = smooth[~mask]
    noise = 1.4826 * np.median(np.abs(paper - np.median(paper))) if paper.size else 0.0
    core = np.percentile(smooth[mask], 90) if mask.any() else 0.0
    if not mask.any() or core < max(0.03, 6 * noise):
        raise NoDigitFound("no ink stands out of the paper")
    digit = _components(mask)
    rows, cols = np.nonzero(digit)
    pad = max(np.ptp(rows), np.ptp(cols)) // 4 + 2
    box = (slice(max(0, rows.min() - pad), rows.max() + pad + 1),
           slice(max(0, cols.min() - pad), cols.max() + pad + 1))
    digit = digit[box]
    # grey levels: 0 halfway to the threshold, 1 at the strokes' core (as MNIST's ink)
    level = np.clip((smooth[box] - t / 2) / (core - t / 2), 0, 1) * ndimage.binary_dilation(
        digit, iterations=1)
    level = _even_strokes(level, digit)
    rows, cols = np.nonzero(level > 0.1)
    crop = level[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    scale = 20.0 / max(crop.shape)
    h, w = max(1, round(crop.shape[0] * scale)), max(1, round(crop.shape[1] * scale))
    small = np.asarray(Image.fromarray(crop.astype(np.float32)).resize(
        (w, h), Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR))
    small = np.clip(small / max(float(small.max()), 1e-6), 0, 1)
    # centre of mass at the frame's centre (13.5, 13.5), the box kept inside the frame
    total = small.sum()
    cy = (small.sum(axis=1) * np.arange(h)).sum() / total
    cx = (small.sum(axis=0) * np.arange(w)).sum() / total
    top = int(np.clip(round(13.5 - cy), 0, 28 - h))
    left = int(np.clip(round(13.5 - cx), 0, 28 - w))
    frame = np.zeros((28, 28), np.float32)
    frame[top:top + h, left:left + w] = small
    return frame
