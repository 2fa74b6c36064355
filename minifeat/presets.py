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
    # each value measured on eval_sift's 112 warped-photo cases (docs/sift-accuracy.md)
    "accurate": {
        "descriptor_format": "rootsift",  # precision 0.868 -> 0.900, correct +2.5%
        "max_offset": 0.7,                # extrema half-way between samples kept: repeat.
                                          # 0.662 -> 0.709, correct +21%
        "n_intervals": 4,                 # finer scale sampling: correct +16%
        "edge_threshold": 12.0,           # a few more blob-like corners: correct +5%
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
