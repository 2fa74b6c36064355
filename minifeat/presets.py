"""Named sets of :class:`~minifeat.SIFT` constructor values.

``SIFT()`` keeps OpenCV's defaults (its keypoints and descriptors are OpenCV's, to 0.0005 px
and 0.99998 median cosine).  ``SIFT(preset="accurate")`` trades that compatibility for better
matching, measured by ``benchmarks/eval_sift.py`` (photos warped by known homographies:
rotations, scales, noise, perspective, strong viewpoint changes); ``docs/sift-accuracy.md``
has the table of what each value bought.  Keywords given to ``SIFT`` together with a preset
win over the preset's values where they differ from ``SIFT``'s defaults.

``MATCHING[preset]`` is the advised :func:`minifeat.matching.match_descriptors` keywords for
descriptors of that preset.
"""
from __future__ import annotations

__all__ = ["PRESETS", "MATCHING", "resolve"]

PRESETS: dict[str, dict] = {
    "opencv": {},
    "accurate": {
        "descriptor_format": "rootsift",
    },
}

MATCHING: dict[str, dict] = {
    "opencv": {"ratio": 0.8},
    "accurate": {"ratio": 0.8, "cross_check": True},
}


def resolve(preset: str | None, given: dict, defaults: dict) -> dict:
    """The constructor values: ``given`` (all of ``SIFT.__init__``'s keywords) where they
    differ from ``defaults``, else the preset's value, else ``given``'s."""
    if preset is None:
        return dict(given)
    if preset not in PRESETS:
        raise ValueError(f"`preset` must be one of {sorted(PRESETS)} or None, got {preset!r}")
    out = dict(given)
    for k, v in PRESETS[preset].items():
        if given[k] == defaults[k]:
            out[k] = v
    return out
