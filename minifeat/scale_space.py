"""The SIFT Gaussian scale space and its difference of Gaussians (Lowe 2004, sec. 3; IPOL
"Anatomy of the SIFT method", Rey-Otero & Delbracio 2014, sec. 2).

Shape legend: ``S`` = intervals per octave (``n_intervals``), each octave holds ``S + 3``
Gaussian images and ``S + 2`` DoG images of shape (H_o, W_o); octave ``o`` (0-based, octave 0 is
the 2x upsampled one) has pixel spacing ``2**(o - 1)`` input pixels.

Schedule (relative to the octave's own pixel grid): image ``s`` has blur
``sigma * 2**(s / S)``; it is made from image ``s - 1`` by an incremental blur of
``sqrt(sigma_s^2 - sigma_{s-1}^2)``.  The first image of octave ``o > 0`` is image ``S`` of
octave ``o - 1`` (blur ``2 sigma``) taken at every other pixel.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from minidl import backend as B
from minidl import parallel

from .filters import gaussian_blur

__all__ = ["ScaleSpace", "Octave", "iter_octaves", "upsample2x", "build_scale_space",
           "sigma_schedule", "n_octaves_for"]


@dataclass
class ScaleSpace:
    """Pyramids of one image.

    Attributes
    ----------
    gaussians : list of ndarray (S + 3, H_o, W_o), one per octave
    dogs : list of ndarray (S + 2, H_o, W_o), ``gaussians[o][s + 1] - gaussians[o][s]``
    sigma, n_intervals : the schedule's parameters
    first_octave : -1 when the input was upsampled 2x, else 0 (OpenCV's convention)
    """

    gaussians: list
    dogs: list
    sigma: float
    n_intervals: int
    first_octave: int = -1


def upsample2x(image, *, workspace=None):
    """Bilinear 2x upsampling with pixel-centre alignment (OpenCV ``INTER_LINEAR``).

    Output pixel ``i`` samples the input at ``(i + 0.5) / 2 - 0.5``: even outputs are
    ``0.75 I[k] + 0.25 I[k-1]``, odd outputs ``0.75 I[k] + 0.25 I[k+1]``, edges replicated.
    (H, W) -> (2H, 2W) float32; the output (and the temporaries) come from ``workspace`` (a
    :class:`minidl.workspace.Workspace`) when one is given.
    """
    xp = B.get_array_module(image)
    H, W = image.shape
    a = image.astype(xp.float32, copy=False)
    rows = _empty(xp, (2 * H, W), workspace)
    _upsample_axis0(a, rows, xp, workspace)
    out = _empty(xp, (2 * H, 2 * W), workspace)
    _upsample_axis0(rows.T, out.T, xp, workspace)
    if workspace is not None:
        workspace.give(rows)
    return out


def _empty(xp, shape, workspace):
    """An uninitialised float32 array, from ``workspace`` when there is one."""
    if workspace is None:
        return xp.empty(shape, dtype=xp.float32)
    return workspace.take(xp, shape, xp.float32)


def _upsample_axis0(a, dst, xp, workspace=None):
    """``dst[2k] = 0.75 a[k] + 0.25 a[k-1]``, ``dst[2k+1] = 0.75 a[k] + 0.25 a[k+1]`` (edges
    replicated), from slices: no concatenated copies of the image.  The two scaled copies of
    ``a`` come from ``workspace`` when there is one (in ``a``'s memory order: ``a`` may be a
    transposed view); fresh ones cost as much in page faults as the whole pass."""
    transposed = not a.flags.c_contiguous  # the column pass: a = rows.T
    bufs = [_empty(xp, a.T.shape if transposed else a.shape, workspace) for _ in range(2)]
    a75, a25 = (b.T for b in bufs) if transposed else bufs

    def work(lo, hi):  # columns lo:hi (elementwise: any split gives the same bits)
        x, x75, x25, d = a[:, lo:hi], a75[:, lo:hi], a25[:, lo:hi], dst[:, lo:hi]
        xp.multiply(x, a.dtype.type(0.75), out=x75)
        xp.multiply(x, a.dtype.type(0.25), out=x25)
        xp.add(x75[1:], x25[:-1], out=d[2::2])
        xp.add(x75[:1], x25[:1], out=d[0:1])
        xp.add(x75[:-1], x25[1:], out=d[1:-1:2])
        xp.add(x75[-1:], x25[-1:], out=d[-1:])

    parallel.parallel_for(int(a.shape[1]), work, nbytes=6 * a.nbytes, like=a)
    if workspace is not None:
        workspace.give(*bufs)


def sigma_schedule(sigma: float = 1.6, n_intervals: int = 3) -> list[float]:
    """Incremental blurs ``[sig_0, sig_1, ..., sig_{S+2}]`` within one octave.

    ``sig_0 = sigma`` (total blur of image 0); for ``s >= 1``
    ``sig_s = sigma * sqrt(k^(2s) - k^(2s-2))``, ``k = 2^(1/S)`` (Lowe 2004, sec. 3).
    """
    k = 2.0 ** (1.0 / n_intervals)
    sig = [sigma]
    for s in range(1, n_intervals + 3):
        prev = sigma * k ** (s - 1)
        sig.append(math.sqrt((prev * k) ** 2 - prev ** 2))
    return sig


def n_octaves_for(shape, first_octave: int = -1, min_size: int = 8) -> int:
    """OpenCV's count: ``round(log2(min(H, W) * 2**-first_octave) - 2) + 1`` ... floored so the
    smallest octave keeps at least ``min_size`` pixels per side."""
    m = min(shape) * 2.0 ** (-first_octave)
    n = int(round(math.log2(m) - 2)) + 1 if m > 1 else 1
    while n > 1 and m / 2 ** (n - 1) < min_size:
        n -= 1
    return max(n, 1)


@dataclass
class Octave:
    """One octave of the pyramids (see :func:`iter_octaves`).

    Attributes
    ----------
    index : 0-based octave number (octave ``index + first_octave`` in OpenCV's numbering)
    gaussians : ndarray (S + 3, H_o, W_o) float32
    dogs : ndarray (S + 2, H_o, W_o) float32, or None when not asked for
    """

    index: int
    gaussians: object
    dogs: object = None


def iter_octaves(image, sigma: float = 1.6, n_intervals: int = 3, assumed_blur: float = 0.5,
                 upsample: bool = True, n_octaves: int | None = None, *, dogs: bool = True,
                 workspace=None):
    """Yield the :class:`Octave` s of a float32 image (H, W) one at a time, finest first.

    The same arrays as :func:`build_scale_space`, bitwise, but only one octave need be alive at
    a time: before the next octave is built its base (image ``S`` of this octave at every other
    pixel, a quarter of one layer) is copied out, so the consumer may free or give back the
    octave's arrays as soon as it has used them -- peak memory is one octave (the finest, 4x the
    input pixels when upsampling), not the whole pyramid.  ``dogs=False`` skips the DoG (a
    consumer that computes it where it needs it).  Arrays come from ``workspace`` when given.
    """
    xp = B.get_array_module(image)
    first = -1 if upsample else 0
    if n_octaves is None:
        n_octaves = n_octaves_for(image.shape, first)
    sig = sigma_schedule(sigma, n_intervals)
    base = upsample2x(image, workspace=workspace) if upsample else image
    pre = assumed_blur * (2.0 if upsample else 1.0)
    base = base.astype(xp.float32, copy=False)
    g = _empty(xp, (n_intervals + 3,) + tuple(base.shape), workspace)
    # blurred straight into place
    gaussian_blur(base, math.sqrt(max(sigma ** 2 - pre ** 2, 0.01)), out=g[0])
    if upsample and workspace is not None:
        workspace.give(base)
    del base
    for o in range(n_octaves):
        for s in range(1, n_intervals + 3):
            gaussian_blur(g[s - 1], sig[s], out=g[s])
        nxt = None
        if o + 1 < n_octaves:  # downsampled by slicing, before the consumer frees ``g``
            shape = (n_intervals + 3,) + tuple(g[n_intervals][::2, ::2].shape)
            nxt = _empty(xp, shape, workspace)
            nxt[0] = g[n_intervals][::2, ::2]
        # no local keeps the DoG or a view of ``g``: they live only as long as the consumer
        # holds them
        yield Octave(o, g, xp.subtract(g[1:], g[:-1], out=_empty(
            xp, (n_intervals + 2,) + g.shape[1:], workspace)) if dogs else None)
        g = nxt


def build_scale_space(image, sigma: float = 1.6, n_intervals: int = 3,
                      assumed_blur: float = 0.5, upsample: bool = True,
                      n_octaves: int | None = None, *, workspace=None) -> ScaleSpace:
    """Gaussian and DoG pyramids of a float32 image (H, W) (IPOL sec. 2.2): every octave of
    :func:`iter_octaves`, kept.

    The input is assumed blurred by ``assumed_blur``; after 2x upsampling that blur doubles, and
    the base image gets ``sqrt(sigma^2 - (2 assumed_blur)^2)`` more (at least 0.1).
    ``workspace``: optional :class:`minidl.workspace.Workspace` the pyramids' arrays are taken
    from (fresh arrays otherwise); give them back when the scale space is no longer used.
    """
    octaves = list(iter_octaves(image, sigma, n_intervals, assumed_blur, upsample, n_octaves,
                                workspace=workspace))
    return ScaleSpace([o.gaussians for o in octaves], [o.dogs for o in octaves], sigma,
                      n_intervals, -1 if upsample else 0)
