"""SIFT(preset=...): the named values, explicit keywords over them, errors; the accurate
preset's descriptors and its advised matching on a warped photo."""
import numpy as np
import pytest

from minidl import backend as B
from minifeat import SIFT, load_image
from minifeat.matching import match_descriptors
from minifeat.presets import MATCHING, PRESETS

from _warp import correct_mask, rotation, warp


def _settings(s):
    return {k: getattr(s, k) for k in ("n_features", "n_intervals", "contrast_threshold",
                                       "edge_threshold", "sigma", "assumed_blur", "upsample",
                                       "descriptor_format", "keep_buffers", "max_offset")}


def test_presets_set_their_values_and_keywords_win():
    default = _settings(SIFT())
    assert _settings(SIFT(preset="opencv")) == default and SIFT().preset is None
    acc = SIFT(preset="accurate")
    assert acc.preset == "accurate" and "preset='accurate'" in repr(acc)
    assert PRESETS["accurate"], "the accurate preset changes something"
    for k, v in PRESETS["accurate"].items():
        assert getattr(acc, k) == v != default[k], k
    mine = SIFT(preset="accurate", descriptor_format="opencv", n_features=50)
    assert mine.descriptor_format == "opencv" and mine.n_features == 50
    for k, v in PRESETS["accurate"].items():
        if k not in ("descriptor_format", "n_features"):
            assert getattr(mine, k) == v
    assert set(MATCHING) == set(PRESETS)


def test_bad_preset_is_named():
    with pytest.raises(ValueError, match=r"`preset` must be one of \['accurate', 'opencv'\] or "
                                         r"None, got 'fast'"):
        SIFT(preset="fast")


def test_accurate_descriptors_are_unit_vectors(xp):
    img = np.random.default_rng(0).random((80, 90)).astype(np.float32)
    kp, d = SIFT(preset="accurate").detect_and_compute(xp.asarray(img))
    d = B.to_host(d)
    assert len(kp) > 5 and d.shape == (len(kp), 128) and d.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1, atol=1e-5)


@pytest.mark.data
def test_accurate_preset_matches_a_rotated_photo_more_precisely(images_dir):
    a = B.to_host(load_image(images_dir / "butterfly.jpg"))
    H, shape = rotation(40.0, a.shape)
    b = np.round(warp(a, H, shape) * 255) / 255
    out = {}
    for name, sift in (("opencv", SIFT()), ("accurate", SIFT(preset="accurate"))):
        k1, d1 = sift.detect_and_compute(a)
        k2, d2 = sift.detect_and_compute(b.astype(np.float32))
        m = B.to_host(match_descriptors(d1, d2, **MATCHING[name])[0])
        ok = correct_mask(H, B.to_host(k1.centred())[m[:, 0]], B.to_host(k2.centred())[m[:, 1]])
        out[name] = (ok.mean(), int(ok.sum()))
    assert out["accurate"][0] > out["opencv"][0] and out["accurate"][0] > 0.95, out
