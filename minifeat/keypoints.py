"""Keypoints as a struct of arrays.

Coordinate convention: OpenCV's (``cv2.KeyPoint``), offset included.  ``x`` is the column and
``y`` the row of the *input* image, in pixels, on the grid where the top-left pixel's centre is
(0, 0).  SIFT with ``upsample=True`` (the default, as OpenCV) reports every position 0.25 px
right of and below the feature's true centre on that grid: the 2x upsampled image is made with
bilinear interpolation between pixel centres, so its pixel ``i`` lies at input coordinate
``i / 2 - 0.25``, yet OpenCV (and minifeat, to stay comparable) reports ``i / 2``; each
coarser octave is a subsampling of it and keeps the same shift.  ``x - 0.25, y - 0.25`` is the
centre on the pixel-centre grid (:meth:`Keypoints.centred`); with ``upsample=False`` there is
no shift.  Keypoints given by the user (``compute``) are taken in the same convention, so
positions read back from a detector go straight back in.

``size`` is the diameter of the meaningful neighbourhood, ``size = 2 sigma`` where ``sigma`` is
the keypoint's blur scale in input pixels.  ``angle`` is in degrees, [0, 360), measured from
the +x axis towards +y (clockwise on screen, since y points down), i.e. the dominant gradient
points along ``(cos angle, sin angle)`` in (x, y).  ``octave`` is the pyramid octave (-1 = the
2x upsampled one), ``layer`` the Gaussian image index within it (the detector's are 1..S),
``response`` the interpolated |DoG| value.  ``layer = -1`` (:data:`NO_LAYER`, the default when
``octave``/``layer`` are not given, e.g. ``Keypoints(x, y, size, angle)``) means "not known":
``SIFT.compute`` then derives both from ``size`` as the detector would have assigned them
(:func:`pyramid_levels`), and ``octave`` is ignored.

Scale: ``sigma`` is the smaller blur of the DoG pair the keypoint was found in (Lowe's
convention, as OpenCV).  For a Gaussian blob of standard deviation ``s0`` the DoG between
blurs ``s`` and ``k s`` (``k = 2^(1/S)``) peaks at ``s = s0 / sqrt(k)``, so SIFT reports
``sigma ~= 0.89 s0`` for ``S = 3``.  The detector's keypoint of octave ``o``, layer ``l`` and
refined scale offset ``xi`` (``|xi| < 0.5``) has ``size = 2 sigma0 2^(o + (l + xi) / S)``
(``sigma0`` = SIFT's ``sigma``), which is how :func:`pyramid_levels` inverts it.
"""
from __future__ import annotations

import numpy

from minidl import backend as B

__all__ = ["Keypoints", "NO_LAYER", "pyramid_levels"]

NO_LAYER = -1  # ``layer`` of a keypoint whose octave and layer are not known

_FIELDS = ("x", "y", "size", "angle", "response", "octave", "layer")


class Keypoints:
    """N keypoints; each field is a 1-D array of length N on one backend (lists and tuples
    are taken as NumPy arrays).

    ``len(kp)``, ``kp[mask_or_indices]`` (a new Keypoints), ``kp.xy`` (N, 2),
    ``kp.sigma`` (= size / 2), :meth:`centred`, :meth:`to_opencv`, :meth:`from_opencv`.
    ``x, y, size, angle, response`` are float32, ``octave, layer`` int32.  Without
    ``octave``/``layer``, ``octave = 0`` and ``layer = NO_LAYER`` (-1: not known).
    """

    def __init__(self, x, y, size, angle=None, response=None, octave=None, layer=None):
        # sequences (lists, tuples) become NumPy arrays; arrays stay on their backend
        x, y, size, angle, response, octave, layer = (
            v if v is None or hasattr(v, "astype") else numpy.asarray(v)
            for v in (x, y, size, angle, response, octave, layer))
        if x.ndim != 1:
            raise ValueError(f"keypoint field `x` must be 1-D (N,), got shape {tuple(x.shape)}")
        xp = B.get_array_module(x, y, size)
        n = int(x.shape[0])
        self.x = x.astype(xp.float32)
        self.y = y.astype(xp.float32)
        self.size = size.astype(xp.float32)
        self.angle = (xp.zeros(n, xp.float32) if angle is None else angle.astype(xp.float32))
        self.response = (xp.zeros(n, xp.float32) if response is None
                         else response.astype(xp.float32))
        self.octave = (xp.zeros(n, xp.int32) if octave is None else octave.astype(xp.int32))
        self.layer = (xp.full(n, NO_LAYER, xp.int32) if layer is None
                      else layer.astype(xp.int32))
        for f in _FIELDS:
            if getattr(self, f).shape != (n,):
                raise ValueError(f"keypoint field `{f}` must have shape ({n},), "
                                 f"got {tuple(getattr(self, f).shape)}")

    @classmethod
    def empty(cls, xp=None):
        xp = B.get_xp() if xp is None else xp
        z = xp.zeros(0, xp.float32)
        return cls(z, z, z)

    def __len__(self):
        return int(self.x.shape[0])

    def __getitem__(self, idx):
        return Keypoints(*(getattr(self, f)[idx] for f in _FIELDS))

    @property
    def sigma(self):
        return self.size * 0.5

    @property
    def xy(self):
        xp = B.get_array_module(self.x)
        return xp.stack([self.x, self.y], axis=1)

    def centred(self, offset: float = 0.25):
        """Positions (N, 2) float64 on the pixel-centre grid: ``xy - offset``.  0.25 undoes
        the shift of an upsampled pyramid (SIFT's and OpenCV's default, see the module's
        docstring); pass 0 for keypoints of ``SIFT(upsample=False)``."""
        xp = B.get_array_module(self.x)
        return self.xy.astype(xp.float64) - offset

    def __repr__(self):
        return f"Keypoints(n={len(self)}, device={B.device_of(self.x)})"

    @staticmethod
    def concatenate(parts):
        xp = B.get_array_module(parts[0].x)
        return Keypoints(*(xp.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS))

    # ------------------------------------------------------------------ OpenCV interop
    def to_opencv(self):
        """A list of ``cv2.KeyPoint`` (imports cv2 lazily; cv2 must be installed).

        ``octave`` is packed as OpenCV does: ``(octave & 255) | (layer << 8)``; a keypoint
        without octave/layer (``layer = NO_LAYER``) gets 0, as a bare ``cv2.KeyPoint``.
        """
        import cv2  # noqa: deferred, optional peer

        h = {f: B.to_host(getattr(self, f)) for f in _FIELDS}
        known = h["layer"] >= 0
        packed = numpy.where(known, (h["octave"].astype(numpy.int64) & 255)
                             | (h["layer"].astype(numpy.int64) << 8), 0)
        return [cv2.KeyPoint(float(h["x"][i]), float(h["y"][i]), float(h["size"][i]),
                             float(h["angle"][i]), float(h["response"][i]), int(packed[i]))
                for i in range(len(self))]

    @classmethod
    def from_opencv(cls, kps, xp=None):
        """From a sequence of ``cv2.KeyPoint`` (duck-typed: needs ``pt, size, angle, response,
        octave``); OpenCV's packed ``octave`` is unpacked into ``octave`` and ``layer``."""
        n = len(kps)
        arr = numpy.zeros((n, 5), numpy.float64)
        packed = numpy.zeros(n, numpy.int64)
        for i, k in enumerate(kps):
            arr[i] = (k.pt[0], k.pt[1], k.size, k.angle, k.response)
            packed[i] = k.octave
        octave = packed & 255
        octave = numpy.where(octave >= 128, octave - 256, octave)
        layer = (packed >> 8) & 255
        angle = numpy.where(arr[:, 3] < 0, 0.0, arr[:, 3])
        b = B.get_backend() if xp is None else B._backend_for_xp(xp)
        cols = [arr[:, 0], arr[:, 1], arr[:, 2], angle, arr[:, 4], octave, layer]
        return cls(*(b.asarray(numpy.ascontiguousarray(c)) for c in cols))


def pyramid_levels(kp: Keypoints, sigma: float = 1.6, n_intervals: int = 3,
                   first_octave: int = -1, n_octaves: int | None = None):
    """The (octave, layer) each keypoint is described in: its own where known and inside the
    pyramid, else derived from ``size`` as SIFT's (and OpenCV's) detector assigns them.

    The detector reports ``size = 2 sigma 2^(o + (l + xi) / S)`` with layer ``l`` in 1..S and
    refinement offset ``|xi| < 0.5``, so ``t = round(S log2(size / (2 sigma)))`` is
    ``o S + l``: ``o = floor((t - 1) / S)``, ``l = t - o S`` (the same values as OpenCV packs,
    checked on every keypoint of three photos).  Sizes beyond the pyramid's octaves
    ``first_octave .. first_octave + n_octaves - 1`` go to the nearest octave and the layer of
    the closest blur there (0..S+2).

    kp : Keypoints (N); sigma, n_intervals (S) : the SIFT's; first_octave : -1 when upsampled,
    else 0; n_octaves : octaves in the pyramid (None: unbounded above).
    Returns int64 arrays ``(octave, layer)``, each (N,).
    """
    xp = B.get_array_module(kp.size)
    S = int(n_intervals)
    octave, layer = kp.octave.astype(xp.int64), kp.layer.astype(xp.int64)
    last = None if n_octaves is None else first_octave + int(n_octaves) - 1
    bad = (layer < 0) | (layer > S + 2) | (octave < first_octave)
    if last is not None:
        bad |= octave > last
    if not bool(bad.any()):
        return octave, layer
    size = xp.maximum(kp.size.astype(xp.float64), 1e-12)
    t = xp.rint(xp.log2(size / (2.0 * sigma)) * S).astype(xp.int64)
    o = xp.floor_divide(t - 1, S)
    o_in = xp.maximum(o, first_octave) if last is None else xp.clip(o, first_octave, last)
    l_est = xp.where(o_in == o, t - o * S, xp.clip(t - o_in * S, 0, S + 2))
    return xp.where(bad, o_in, octave), xp.where(bad, l_est, layer)
