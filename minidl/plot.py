"""Training curves and confusion matrices as PNG files, drawn with Pillow (no matplotlib).

Host-side only: inputs are Python lists / numpy arrays.
"""
from __future__ import annotations

import pathlib

import numpy
from PIL import Image, ImageDraw, ImageFont

__all__ = ["plot_history", "plot_confusion_matrix", "line_chart"]

_COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40)]


def _font():
    return ImageFont.load_default()


def line_chart(draw: ImageDraw.ImageDraw, box, series: dict, title: str, ylabel: str) -> None:
    """Draw ``series`` (label -> list of (x, y)) into ``box`` = (left, top, right, bottom)."""
    left, top, right, bottom = box
    pl, pt, pr, pb = left + 55, top + 25, right - 10, bottom - 35
    draw.rectangle([pl, pt, pr, pb], outline=(0, 0, 0))
    draw.text((left + 5, top + 5), title, fill=(0, 0, 0), font=_font())
    draw.text((pr - 30, pb + 18), "epoch", fill=(80, 80, 80), font=_font())
    pts = [(x, y) for s in series.values() for x, y in s if y is not None]
    if not pts:
        return
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys)
    if y1 - y0 < 1e-12:
        y0, y1 = y0 - 0.5, y1 + 0.5
    pad = (y1 - y0) * 0.05
    y0, y1 = (y0 - pad if y0 - pad >= 0 or y0 < 0 else 0.0), y1 + pad  # no negative loss axis

    def to_px(x, y):
        return (pl + (x - x0) / (x1 - x0) * (pr - pl), pb - (y - y0) / (y1 - y0) * (pb - pt))

    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        yv = y0 + frac * (y1 - y0)
        _, yp = to_px(x0, yv)
        draw.line([pl - 4, yp, pl, yp], fill=(0, 0, 0))
        draw.text((left + 2, yp - 6), f"{yv:.3g}", fill=(0, 0, 0), font=_font())
    for xv in sorted(set(xs)):
        xp_, _ = to_px(xv, y0)
        draw.line([xp_, pb, xp_, pb + 4], fill=(0, 0, 0))
        draw.text((xp_ - 3, pb + 5), f"{xv:g}", fill=(0, 0, 0), font=_font())
    for i, (label, s) in enumerate(series.items()):
        color = _COLORS[i % len(_COLORS)]
        line = [to_px(x, y) for x, y in s if y is not None]
        if len(line) > 1:
            draw.line(line, fill=color, width=2)
        for px, py in line:
            draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=color)
        # legend under the plot, clear of the curves
        lx = pl + 60 * i
        draw.line([lx, pb + 24, lx + 14, pb + 24], fill=color, width=2)
        draw.text((lx + 18, pb + 18), label, fill=color, font=_font())


def plot_history(history, path) -> pathlib.Path:
    """Loss and accuracy per epoch (train and validation) side by side, as a PNG."""
    epochs = history.column("epoch")
    img = Image.new("RGB", (900, 360), "white")
    draw = ImageDraw.Draw(img)
    for j, (metric, title) in enumerate((("loss", "log loss"), ("accuracy", "accuracy"))):
        series = {}
        for split in ("train", "val"):
            ys = history.column(f"{split}_{metric}")
            if any(y is not None for y in ys):
                series[split] = list(zip(epochs, ys))
        line_chart(draw, (j * 450, 0, (j + 1) * 450, 360), series, title, metric)
    path = pathlib.Path(path)
    img.save(path)
    return path


def plot_confusion_matrix(cm, path, class_names=None) -> pathlib.Path:
    """A (C, C) count matrix (rows true, columns predicted) as a heat map with counts."""
    cm = numpy.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"cm must be a square (C, C) matrix, got shape {cm.shape}")
    c = cm.shape[0]
    names = [str(n) for n in (class_names or range(c))]
    cell, margin = 44, 90
    img = Image.new("RGB", (margin + c * cell + 10, margin + c * cell + 10), "white")
    draw = ImageDraw.Draw(img)
    rows = cm / numpy.maximum(cm.sum(axis=1, keepdims=True), 1)
    for i in range(c):
        draw.text((5, margin + i * cell + cell // 2 - 6), names[i][:12], fill=(0, 0, 0),
                  font=_font())
        draw.text((margin + i * cell + 4, margin - 18), names[i][:6], fill=(0, 0, 0),
                  font=_font())
        for j in range(c):
            shade = int(255 * (1 - rows[i, j]))
            x, y = margin + j * cell, margin + i * cell
            draw.rectangle([x, y, x + cell, y + cell], fill=(shade, shade, 255),
                           outline=(200, 200, 200))
            draw.text((x + 4, y + cell // 2 - 6), str(int(cm[i, j])),
                      fill=(0, 0, 0) if shade > 120 else (255, 255, 255), font=_font())
    draw.text((margin, 5), "confusion matrix (rows: true, columns: predicted)", fill=(0, 0, 0),
              font=_font())
    path = pathlib.Path(path)
    img.save(path)
    return path
