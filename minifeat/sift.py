"""SIFT: the Scale-Invariant Feature Transform, by hand (Lowe 2004, IJCV 60(2); Rey-Otero &
Delbracio, "Anatomy of the SIFT method", IPOL 2014), numerically following OpenCV's
``cv2.SIFT`` so that keypoints and descriptors can be compared with it.

Pipeline (each stage is a small module, vectorized over all keypoints):

1. :mod:`~minifeat.scale_space` -- 2x bilinear upsampling, Gaussian pyramid, DoG.
2. :mod:`~minifeat.extrema` -- 3x3x3 extrema, quadratic refinement, contrast and edge tests.
3. :mod:`~minifeat.orientation` -- 36-bin gradient histograms, peaks >= 0.8 max.
4. :mod:`~minifeat.descriptors` -- 4x4x8 trilinear histograms, normalise/clamp/normalise.

Example
-------
>>> from minifeat import SIFT, load_image                       # doctest: +SKIP
>>> kp, desc = SIFT().detect_and_compute(load_image("box.png"))  # doctest: +SKIP
>>> desc.shape                                                    # doctest: +SKIP
(603, 128)
"""
from __future__ import annotations

import inspect
import time

import numpy

from minidl import backend as B
from minidl.workspace import Workspace

from .descriptors import (descriptor_window_samples, normalize_descriptors, rootsift,
                          sift_descriptors)
from .extrema import LazyDoG, find_extrema, refine_extrema
from .io import as_image
from .keypoints import Keypoints, pyramid_levels
from .layer_gradients import LayerGradients, in_keypoint_chunks
from .orientation import (dominant_orientations, orientation_histograms,
                          orientation_window_samples)
from .presets import resolve as resolve_preset
from .scale_space import Octave, iter_octaves, n_octaves_for

__all__ = ["SIFT", "KEEP_BUFFERS_MAX_PIXELS"]

# ``keep_buffers`` keeps a call's arrays for images up to this many input pixels (4 MP: 1.6 GB
# of buffers); larger ones are freed octave by octave (one octave alive, not the pyramid)
KEEP_BUFFERS_MAX_PIXELS = 1 << 22


class SIFT:
    """SIFT detector and descriptor extractor.

    Parameters
    ----------
    n_features : int, 0 = keep all; else keep the strongest ``n_features`` by response
    n_intervals : int, scales per octave (``nOctaveLayers`` in OpenCV), default 3
    contrast_threshold : float, on |DoG| * n_intervals for images in [0, 1], default 0.04
    edge_threshold : float, principal-curvature ratio r, default 10
    sigma : float, blur of each octave's first image, default 1.6
    assumed_blur : float, blur already in the input, default 0.5
    upsample : bool, start from the 2x upsampled image (octave -1), default True
    descriptor_format : "unit" (float32, unit L2 norm; default), "opencv" (OpenCV's values:
        integers 0..255 in float32, = round(min(512 v, 255))) or "rootsift" (Hellinger kernel)
    keep_buffers : bool, default True: keep the last call's large NumPy arrays (every octave's
        Gaussians and one set of gradient maps per octave: about 225 bytes per input pixel,
        117 MB for an 868x600 photo) and reuse them for the next image of the same size,
        instead of fresh memory whose page faults cost time (see ``benchmarks/bench_sift.py``).
        Only for images up to ``KEEP_BUFFERS_MAX_PIXELS`` (4 MP): a call needs one octave at a
        time (docs/design/sift.md), kept buffers would hold them all.
        :meth:`release_buffers` frees them; False never keeps them.
    max_offset : float in [0.5, 1], default 0.5 (OpenCV): an extremum's quadratic refinement
        is accepted once its offset from the sample is below this in x, y and scale, else the
        sample moves (:func:`~minifeat.extrema.refine_extrema`); 0.6 (IPOL, scikit-image)
        keeps extrema half-way between samples, which 0.5 drops after they oscillate
    preset : None (the values above: OpenCV's), or "accurate": a named set of these values
        that matches better than OpenCV's on warped photos (``benchmarks/eval_sift.py``; the
        values and what each bought: :mod:`minifeat.presets`, ``docs/sift-accuracy.md``);
        keywords that differ from the defaults win over the preset's.  Match its descriptors
        with ``match_descriptors(d1, d2, **minifeat.presets.MATCHING["accurate"])``.

    Images
    ------
    ``detect``, ``compute`` and ``detect_and_compute`` take a file path (str or pathlib.Path)
    or an array (H, W) / (H, W, 3|4) of any backend, read by :func:`minifeat.io.as_image`:
    uint8 / 255, uint16 / 65535 (a :class:`~minifeat.io.LowBitDepthWarning` when the data uses
    12 bits or fewer), floats must be in [0, 1] (ValueError otherwise), NaN/inf refused.  Its
    options pass through as keywords: ``max_value`` (the value meaning white, e.g. 255 for a
    float image in 0..255, 4095 for 12-bit data), ``channel_order="bgr"`` (arrays from
    OpenCV), ``nonfinite="zero"``.  An image too small for the pyramid (under 2x2) or a
    constant one gives 0 keypoints and descriptors of shape (0, 128).

    Attributes
    ----------
    timings : dict of stage -> seconds of the last call (synchronised on GPU)
    """

    def __init__(self, n_features: int = 0, n_intervals: int = 3,
                 contrast_threshold: float = 0.04, edge_threshold: float = 10.0,
                 sigma: float = 1.6, assumed_blur: float = 0.5, upsample: bool = True,
                 descriptor_format: str = "unit", keep_buffers: bool = True,
                 max_offset: float = 0.5, preset: str | None = None):
        if preset is not None:  # a named set of the values above (minifeat.presets)
            given = {k: v for k, v in locals().items() if k in _DEFAULTS}
            SIFT.__init__(self, **resolve_preset(preset, given, _DEFAULTS))
            self.preset = preset
            return
        if not isinstance(n_intervals, int) or n_intervals < 1:
            raise ValueError(f"`n_intervals` must be a positive int, got {n_intervals!r}")
        if not isinstance(n_features, int) or n_features < 0:
            raise ValueError(f"`n_features` must be a non-negative int, got {n_features!r}")
        for name, v in (("contrast_threshold", contrast_threshold),
                        ("edge_threshold", edge_threshold), ("sigma", sigma)):
            if not v > 0:
                raise ValueError(f"`{name}` must be positive, got {v!r}")
        if not 0.5 <= max_offset <= 1:
            raise ValueError(f"`max_offset` must be in [0.5, 1], got {max_offset!r}")
        if descriptor_format not in ("unit", "opencv", "rootsift"):
            raise ValueError("`descriptor_format` must be 'unit', 'opencv' or 'rootsift', "
                             f"got {descriptor_format!r}")
        self.n_features = n_features
        self.n_intervals = n_intervals
        self.contrast_threshold = float(contrast_threshold)
        self.edge_threshold = float(edge_threshold)
        self.sigma = float(sigma)
        self.assumed_blur = float(assumed_blur)
        self.upsample = bool(upsample)
        self.descriptor_format = descriptor_format
        self.keep_buffers = bool(keep_buffers)
        self.max_offset = float(max_offset)
        self.preset = None
        self.timings: dict[str, float] = {}
        self._spares: list = []

    def __repr__(self):
        return (f"SIFT(n_features={self.n_features}, n_intervals={self.n_intervals}, "
                f"contrast_threshold={self.contrast_threshold}, "
                f"edge_threshold={self.edge_threshold}, sigma={self.sigma}, "
                f"descriptor_format={self.descriptor_format!r}, upsample={self.upsample}, "
                f"max_offset={self.max_offset}, preset={self.preset!r})")

    # ------------------------------------------------------------------ public API
    def detect(self, image, **image_options) -> Keypoints:
        """Keypoints of ``image`` (a file path, or an array (H, W) or (H, W, C) of any backend;
        see "Images" above for the contract and ``image_options``)."""
        return self._run(image, None, False, image_options)[0]

    def compute(self, image, keypoints: Keypoints, **image_options):
        """Descriptors (N, 128) float32 of given keypoints (e.g. ``Keypoints.from_opencv``).

        Each keypoint is described in the Gaussian image of its ``octave`` and ``layer``;
        keypoints without them (``Keypoints(x, y, size, angle)``: ``layer = -1``) or with
        values outside the pyramid get those the detector would have assigned from ``size``
        (:func:`minifeat.keypoints.pyramid_levels`).  Positions in OpenCV's convention (see
        :mod:`minifeat.keypoints`)."""
        if not isinstance(keypoints, Keypoints):
            raise TypeError(f"`keypoints` must be a minifeat Keypoints, got "
                            f"{type(keypoints).__name__}")
        _check_keypoints(keypoints)
        return self._run(image, keypoints, True, image_options)[1]

    def detect_and_compute(self, image, **image_options):
        """``(keypoints, descriptors)``; descriptors is float32 (N, 128), OpenCV's order.
        ``image`` and ``image_options`` as :meth:`detect`."""
        return self._run(image, None, True, image_options)

    def release_buffers(self) -> None:
        """Free the arrays kept from the last call (see ``keep_buffers``)."""
        self._spares = []

    # ------------------------------------------------------------------ stages
    def _run(self, image, keypoints, describe, image_options):
        img = as_image(image, **image_options)
        xp = B.get_array_module(img)
        self.timings = {}
        if min(img.shape) < 2:  # too small for the pyramid: nothing to find (as OpenCV)
            if keypoints is None:
                keypoints = Keypoints.empty(xp)
            n = len(keypoints)
            return keypoints, (xp.zeros((n, 128), xp.float32) if describe else None)
        clock = _Clock(xp, self.timings)
        # the big arrays (pyramids, gradient maps) come from the last call's when they fit:
        # fresh memory costs page faults.  Not for huge images: kept buffers would hold every
        # octave at once, where the pipeline below needs one octave at a time.
        keep = self.keep_buffers and img.shape[0] * img.shape[1] <= KEEP_BUFFERS_MAX_PIXELS
        ws = Workspace(per_size=1 << 10, track=True) if keep else None
        if keep:
            ws.give(*self._spares)
        # one layer's gradient maps go to the next layer (without keep: only those)
        maps_ws = ws if keep else Workspace(per_size=2)
        self._spares = []
        first = -1 if self.upsample else 0
        n_oct = n_octaves_for(img.shape, first)
        S = self.n_intervals
        given = keypoints is not None
        if given:
            octave, layer = self._keypoint_levels(keypoints, n_oct, first)
        # Octave by octave: detect, orient and describe an octave, then free it, so that one
        # octave is alive at a time, not the whole pyramid.  Only a global ``n_features`` cut
        # must see every octave's keypoints before describing: those octaves are kept.
        stream = not describe or given or not self.n_features
        raw = xp.zeros((len(keypoints), 128), xp.float64) if given and describe else None
        parts, raws, kept = [], [], []
        for oc in iter_octaves(img, self.sigma, S, self.assumed_blur, self.upsample, n_oct,
                               dogs=False, workspace=ws):
            clock("scale_space")
            polar = LayerGradients(oc.index + first, oc.gaussians, maps_ws)
            if given and describe:
                for lv in range(S + 3):
                    sel = xp.nonzero((octave == polar.octave) & (layer == lv))[0]
                    if int(sel.shape[0]):
                        self._describe_layer(polar, lv, keypoints, sel, raw, expect=True)
                    polar.free(lv)
                clock("descriptors")
            elif not given:
                kp_o, raw_o = self._detect(oc, polar, clock, describe and stream)
                parts += kp_o
                raws += raw_o
                if not stream:
                    kept.append(polar)
            del oc, polar  # this octave's arrays go (or stay in the workspace, when kept)
        if not given:
            keypoints = Keypoints.concatenate(parts) if parts else Keypoints.empty(xp)
            if self.n_features and len(keypoints) > self.n_features:
                keypoints = keypoints[xp.argsort(-keypoints.response)[:self.n_features]]
        desc = None
        if describe:
            if not given:
                raw = (self._describe(kept, keypoints) if kept else
                       xp.concatenate(raws) if raws else xp.zeros((0, 128), xp.float64))
            desc = self._finish(raw)
            clock("descriptors")
            self.timings["total"] = sum(self.timings.values())
        if keep:
            self._spares = list(ws.taken.values())
        return keypoints, desc

    def _detect(self, oc: Octave, polar, clock, describe: bool):
        """Keypoints of one octave and, when ``describe``, their raw descriptors (float64
        (N, 128)), as lists of per-layer parts (concatenated once, for all octaves): layer by
        layer, each layer's gradient maps given back after."""
        dog = LazyDoG(oc.gaussians)  # computed by strips where needed, never stored whole
        xp = B.get_array_module(oc.gaussians)
        S = self.n_intervals
        pre = 0.5 * self.contrast_threshold / S
        s, r, c = find_extrema(dog, pre)
        ref = refine_extrema(dog, s, r, c, S, self.contrast_threshold, self.edge_threshold,
                             max_offset=self.max_offset)
        ref = _unique_samples(ref, dog.shape, xp)
        clock("extrema")
        octave = polar.octave
        parts, raws = [], []
        # the samples are sorted by (layer, row, column): each layer is one run, and its
        # bounds come in one transfer (a device synchronises once, not once per layer)
        ends = numpy.cumsum(B.to_host(xp.bincount(ref["s"], minlength=S + 2)))
        for layer in range(1, S + 1):
            sel = slice(int(ends[layer - 1]), int(ends[layer]))
            if sel.stop == sel.start:
                continue
            g = {k: v[sel] for k, v in ref.items()}
            scale = self.sigma * 2.0 ** ((g["s"] + g["os"]) / S)
            # the layer's whole demand for gradients (orientations, then descriptors at
            # similar scales): dense maps or sparse reads are chosen once for all of it
            grad = polar.get(layer)
            grad.expect(orientation_window_samples(scale) + (
                descriptor_window_samples(scale) if describe else 0))
            hist = in_keypoint_chunks(lambda lo, hi: orientation_histograms(
                grad, g["r"][lo:hi], g["c"][lo:hi], scale[lo:hi]),
                grad, sel.stop - sel.start, orientation_window_samples(scale))
            k, angle = dominant_orientations(hist)
            f = 2.0 ** octave
            kp = Keypoints(
                (g["c"][k] + g["ox"][k]) * f, (g["r"][k] + g["oy"][k]) * f,
                2.0 * scale[k] * f, angle, xp.abs(g["contrast"][k]),
                xp.full(k.shape, octave, dtype=xp.int32),
                xp.full(k.shape, layer, dtype=xp.int32))
            parts.append(kp)
            clock("orientation")
            if describe:
                raw = xp.zeros((len(kp), 128), xp.float64)
                self._describe_layer(polar, layer, kp, None, raw, expect=False)
                raws.append(raw)
                polar.free(layer)
                clock("descriptors")
        return parts, raws

    def _keypoint_levels(self, kp: Keypoints, n_oct: int, first: int):
        """``(octave, layer)`` int64 arrays (N,) the keypoints are described at: their own,
        or derived from ``size`` where unknown or out of range (:func:`pyramid_levels`)."""
        return pyramid_levels(kp, self.sigma, self.n_intervals, first, n_oct)

    def _describe(self, kept: list, kp: Keypoints):
        """Raw descriptors (float64 (N, 128)) of detected keypoints, in the kept octaves
        (their ``LayerGradients``): the ``n_features`` path, after the cut over all octaves."""
        xp = B.get_array_module(kp.x)
        raw = xp.zeros((len(kp), 128), xp.float64)
        for polar in kept:
            for lv in range(self.n_intervals + 3):
                sel = xp.nonzero((kp.octave == polar.octave) & (kp.layer == lv))[0]
                if int(sel.shape[0]):
                    self._describe_layer(polar, lv, kp, sel, raw, expect=False)
                polar.free(lv)
        return raw

    def _describe_layer(self, polar, lv: int, kp: Keypoints, sel, raw, expect: bool):
        """``raw[sel] =`` raw descriptors of keypoints ``sel`` (all: None) in layer ``lv`` of
        ``polar``'s octave, on the host threads by chunks of keypoints."""
        xp = B.get_array_module(raw)
        if sel is not None:
            kp = kp[sel]
        f = 2.0 ** -polar.octave
        grad = polar.get(lv)
        scale = kp.sigma.astype(xp.float64) * f
        if expect:  # else _detect declared it
            grad.expect(descriptor_window_samples(scale))
        x, y = kp.x.astype(xp.float64) * f, kp.y.astype(xp.float64) * f
        d = in_keypoint_chunks(lambda lo, hi: sift_descriptors(
            grad, x[lo:hi], y[lo:hi], kp.angle[lo:hi], scale[lo:hi]),
            grad, len(kp), descriptor_window_samples(scale))
        if sel is None:
            raw[...] = d
        else:
            raw[sel] = d

    def _finish(self, raw):
        """The descriptors in ``descriptor_format`` from raw histograms (N, 128)."""
        if self.descriptor_format == "opencv":
            return normalize_descriptors(raw, opencv_scale=True)
        d = normalize_descriptors(raw)
        return rootsift(d) if self.descriptor_format == "rootsift" else d


def _check_keypoints(kp: Keypoints) -> None:
    """Refuse keypoints that cannot be described: non-finite ``x``, ``y`` or ``angle``, or a
    ``size`` that is not positive and finite (a NaN position would index memory at random, a
    size <= 0 has no scale).  Positions off the image are fine (their windows read zeros).
    One device->host transfer for all four fields."""
    xp = B.get_array_module(kp.x)
    if len(kp) == 0:
        return
    bad = {f: ~xp.isfinite(getattr(kp, f)) for f in ("x", "y", "size", "angle")}
    bad["size"] |= kp.size <= 0
    counts = B.to_host(xp.stack([v.sum() for v in bad.values()]))
    for (f, mask), n in zip(bad.items(), counts):
        if n:
            i = int(B.to_host(xp.argmax(mask)))
            what = "positive and finite" if f == "size" else "finite"
            raise ValueError(f"`keypoints.{f}` must be {what}: {int(n)} of {len(kp)} keypoints "
                             f"are not (the first at index {i}: {float(getattr(kp, f)[i])!r})")


def _unique_samples(ref, shape, xp):
    """Drop candidates that converged onto the same (layer, row, column) sample; the rest
    come sorted by that key (so each layer is one run)."""
    n = int(ref["s"].shape[0])
    if n < 2:
        return ref
    _, H, W = shape
    key = (ref["s"] * H + ref["r"]) * W + ref["c"]
    _, first = xp.unique(key, return_index=True)
    return {k: v[first] for k, v in ref.items()}


_DEFAULTS = {k: p.default for k, p in inspect.signature(SIFT.__init__).parameters.items()
             if k not in ("self", "preset")}


class _Clock:
    """Accumulates per-stage wall time (synchronising the device before each read)."""

    def __init__(self, xp, out):
        self.xp, self.out, self.t = xp, out, time.perf_counter()

    def __call__(self, stage):
        B.synchronize(self.xp)
        now = time.perf_counter()
        dt = now - self.t
        self.t = now
        self.out[stage] = self.out.get(stage, 0.0) + dt
        return dt


