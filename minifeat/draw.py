"""Pictures of keypoints and matches, drawn with Pillow on the host.

Images are arrays (H, W) in [0, 1] (any backend) or PIL images; every function returns a new
RGB ``PIL.Image.Image``.
"""
from __future__ import annotations

import math

import numpy

from minidl import backend as B

__all__ = ["draw_keypoints", "draw_matches", "draw_outline"]


def _to_pil(image):
    from PIL import Image

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    a = numpy.asarray(B.to_host(image), dtype=numpy.float32)
    a = numpy.clip(a * 255.0 + 0.5, 0, 255).astype(numpy.uint8)
    return Image.fromarray(a).convert("RGB")


def _colour(i):
    h = (i * 0.618033988749895) % 1.0
    import colorsys

    r, g, b = colorsys.hsv_to_rgb(h, 0.9, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_keypoints(image, keypoints, *, max_keypoints: int | None = None, width: int = 1):
    """"Rich" keypoints: a circle of radius ``size / 2`` at each keypoint with a line from the
    centre along its orientation (OpenCV's DRAW_RICH_KEYPOINTS picture)."""
    from PIL import ImageDraw

    im = _to_pil(image)
    dr = ImageDraw.Draw(im)
    x, y = B.to_host(keypoints.x), B.to_host(keypoints.y)
    rad, ang = B.to_host(keypoints.size) * 0.5, B.to_host(keypoints.angle)
    order = numpy.argsort(-B.to_host(keypoints.response))
    if max_keypoints is not None:
        order = order[:max_keypoints]
    for n, i in enumerate(order):
        c = _colour(n)
        r = max(float(rad[i]), 1.0)
        dr.ellipse([x[i] - r, y[i] - r, x[i] + r, y[i] + r], outline=c, width=width)
        a = math.radians(float(ang[i]))
        dr.line([x[i], y[i], x[i] + r * math.cos(a), y[i] + r * math.sin(a)], fill=c,
                width=width)
    return im


def draw_matches(image1, kp1, image2, kp2, matches, *, inliers=None, max_matches: int = 200):
    """Both images side by side with a line per match ``(i1, i2)``; with ``inliers`` (bool
    mask over matches) inliers are green and outliers red."""
    from PIL import Image, ImageDraw

    a, b = _to_pil(image1), _to_pil(image2)
    out = Image.new("RGB", (a.width + b.width, max(a.height, b.height)))
    out.paste(a, (0, 0))
    out.paste(b, (a.width, 0))
    dr = ImageDraw.Draw(out)
    m = numpy.asarray(B.to_host(matches)).reshape(-1, 2)
    inl = None if inliers is None else numpy.asarray(B.to_host(inliers), dtype=bool)
    x1, y1 = B.to_host(kp1.x), B.to_host(kp1.y)
    x2, y2 = B.to_host(kp2.x), B.to_host(kp2.y)
    for n, (i, j) in enumerate(m[:max_matches]):
        c = _colour(n) if inl is None else ((40, 220, 40) if inl[n] else (230, 40, 40))
        p, q = (float(x1[i]), float(y1[i])), (float(x2[j]) + a.width, float(y2[j]))
        dr.line([p, q], fill=c, width=1)
        for (u, v) in (p, q):
            dr.ellipse([u - 2, v - 2, u + 2, v + 2], outline=c)
    return out


def draw_outline(image, H, shape, *, offset=(0, 0), colour=(40, 120, 255), width: int = 3):
    """Project the rectangle of an image of ``shape`` (h, w) with homography ``H`` and draw the
    resulting quadrilateral on ``image`` (shifted by ``offset`` = (dx, dy), e.g. the first
    image's width in a side-by-side picture)."""
    from PIL import ImageDraw

    im = _to_pil(image)
    h, w = shape[:2]
    corners = numpy.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], numpy.float64)
    Hh = numpy.asarray(B.to_host(H), numpy.float64)
    p = numpy.c_[corners, numpy.ones(4)] @ Hh.T
    p = p[:, :2] / p[:, 2:3] + numpy.asarray(offset, numpy.float64)
    pts = [tuple(map(float, v)) for v in p]
    ImageDraw.Draw(im).line(pts + [pts[0]], fill=colour, width=width)
    return im
