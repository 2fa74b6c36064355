"""Separable filters on ``xp`` arrays shared by the detectors (edges, corners, blobs): Gaussian
smoothing and derivatives as two 1-D correlations, a box maximum, and the check of a positive
scalar parameter.  Array in, array out, on the backend the array lives on; the image-level API
with input checks is :mod:`minifeat.filters`."""
from __future__ import annotations

import math

import numpy

from minidl.backend import ndimage

__all__ = ["check_positive", "correlate1d", "gaussian_kernel", "gaussian_smooth",
           "gaussian_derivative", "max_filter"]


def check_positive(value, name: str, allow_zero: bool = False) -> float:
    """``value`` as a float when it is a finite number > 0 (>= 0 with ``allow_zero``), else a
    TypeError/ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, numpy.number)):
        raise TypeError(f"`{name}` must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"`{name}` must be finite and {bound}, got {value!r}")
    return float(value)


def correlate1d(xp, image, weights, axis: int, mode: str = "nearest"):
    w = xp.asarray(numpy.asarray(weights, dtype=numpy.float64).astype(image.dtype))
    return ndimage(xp).correlate1d(image, w, axis=axis, mode=mode)


def gaussian_kernel(sigma: float, order: int = 0, truncate: float = 4.0) -> numpy.ndarray:
    """Sampled Gaussian (order 0) or its 1st/2nd derivative, as *correlation* weights.

    ``g(t) = exp(-t^2 / 2 sigma^2) / Z`` with ``sum g = 1``; ``g'(t) = -t/sigma^2 g(t)``;
    ``g''(t) = (t^2/sigma^4 - 1/sigma^2) g(t)``.  Correlation flips the kernel, so the odd
    first derivative changes sign.  The second derivative is shifted to zero sum so a flat
    image has exactly zero Laplacian.
    """
    radius = max(1, int(truncate * sigma + 0.5))
    t = numpy.arange(-radius, radius + 1, dtype=numpy.float64)
    g = numpy.exp(-0.5 * (t / sigma) ** 2)
    g /= g.sum()
    if order == 0:
        return g
    if order == 1:
        return t / sigma**2 * g   # = -g'(t): correlation weights of d/dt
    d2 = (t**2 / sigma**4 - 1.0 / sigma**2) * g
    return d2 - d2.mean()


def gaussian_smooth(xp, image, sigma: float, mode: str = "nearest"):
    """Separable Gaussian smoothing (two 1-D correlations).  ``sigma == 0`` is the identity."""
    if sigma <= 0:
        return image
    k = gaussian_kernel(sigma)
    return correlate1d(xp, correlate1d(xp, image, k, 0, mode), k, 1, mode)


def gaussian_derivative(xp, image, sigma: float, order_y: int, order_x: int,
                         mode: str = "nearest"):
    """``d^(oy+ox) / dy^oy dx^ox`` of the Gaussian-smoothed image (separable)."""
    out = correlate1d(xp, image, gaussian_kernel(sigma, order_y), 0, mode)
    return correlate1d(xp, out, gaussian_kernel(sigma, order_x), 1, mode)


def max_filter(xp, a, radius):
    """Maximum over a box of half-width ``radius[i]`` along each axis (edge-replicated border).

    Separable: per axis, pad by ``r`` with the edge value and take the elementwise maximum of the
    ``2r + 1`` shifted slices.  O(r) array ops per axis, no per-pixel loop.
    """
    for axis, r in enumerate(radius):
        if r <= 0:
            continue
        pad = [(0, 0)] * a.ndim
        pad[axis] = (r, r)
        p = xp.pad(a, pad, mode="edge")
        n = a.shape[axis]
        out = None
        for k in range(2 * r + 1):
            sl = [slice(None)] * a.ndim
            sl[axis] = slice(k, k + n)
            out = p[tuple(sl)] if out is None else xp.maximum(out, p[tuple(sl)])
        a = out
    return a
