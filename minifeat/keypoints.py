"""Keypoints as a struct of arrays.

Coordinate convention (the same as OpenCV's ``cv2.KeyPoint``): ``x`` is the column and ``y`` the
row of the *input* image, in pixels, with pixel centres at integers (the top-left pixel's
centre is (0, 0)).  ``size`` is the diameter of the meaningful neighbourhood, ``size = 2 sigma``
where ``sigma`` is the keypoint's blur scale in input pixels.  ``angle`` is in degrees, [0, 360),
measured from the +x axis towards +y (clockwise on screen, since y points down), i.e. the
dominant gradient points along ``(cos angle, sin angle)`` in (x, y).  ``octave`` is the pyramid
octave (-1 = the 2x upsampled one), ``layer`` the Gaussian image index within it (1..S),
``response`` the interpolated |DoG| value.

Scale: ``sigma`` is the smaller blur of the DoG pair the keypoint was found in (Lowe's
convention, as OpenCV).  For a Gaussian blob of standard deviation ``s0`` the DoG between
blurs ``s`` and ``k s`` (``k = 2^(1/S)``) peaks at ``s = s0 / sqrt(k)``, so SIFT reports
``sigma ~= 0.89 s0`` for ``S = 3``.
"""
from __future__ import annotations

import numpy

from minidl import backend as B

__all__ = ["Keypoints"]

_FIELDS = ("x", "y", "size", "angle", "response", "octave", "layer")


class Keypoints:
    """N keypoints; each field is a 1-D array of length N on one backend.

    ``len(kp)``, ``kp[mask_or_indices]`` (a new Keypoints), ``kp.xy`` (N, 2),
    ``kp.sigma`` (= size / 2), :meth:`to_opencv`, :meth:`from_opencv`.
    """

    def __init__(self, x, y, size, angle=None, response=None, octave=None, layer=None):
        xp = B.get_array_module(x, y, size)
        n = int(x.shape[0])
        self.x = x.astype(xp.float32)
        self.y = y.astype(xp.float32)
        self.size = size.astype(xp.float32)
        self.angle = (xp.zeros(n, xp.float32) if angle is None else angle.astype(xp.float32))
        self.response = (xp.zeros(n, xp.float32) if response is None
                         else response.astype(xp.float32))
        self.octave = (xp.zeros(n, xp.int32) if octave is None else octave.astype(xp.int32))
        self.layer = (xp.zeros(n, xp.int32) if layer is None else layer.astype(xp.int32))
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

    def __repr__(self):
        return f"Keypoints(n={len(self)}, device={B.device_of(self.x)})"

    @staticmethod
    def concatenate(parts):
        xp = B.get_array_module(parts[0].x)
        return Keypoints(*(xp.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS))

    # ------------------------------------------------------------------ OpenCV interop
    def to_opencv(self):
        """A list of ``cv2.KeyPoint`` (imports cv2 lazily; cv2 must be installed).

        ``octave`` is packed as OpenCV does: ``(octave & 255) | (layer << 8)``.
        """
        import cv2  # noqa: deferred, optional peer

        h = {f: B.to_host(getattr(self, f)) for f in _FIELDS}
        packed = (h["octave"].astype(numpy.int64) & 255) | (h["layer"].astype(numpy.int64) << 8)
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
