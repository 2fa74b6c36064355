"""benchmarks.eval_sift: its metrics on planted answers, its warps, and a --quick run."""
import json

import numpy as np
import pytest

from benchmarks import eval_sift as E


def _features(xy, sigma, desc):
    return np.asarray(xy, np.float64), np.asarray(sigma, np.float64), np.asarray(desc, np.float32)


def test_repeatability_of_planted_keypoints(rng):
    H = np.array([[1, 0, 100.0], [0, 1, 80], [0, 0, 1]]) @ E._rot_scale(30, 1.5, 200, 150)
    # a grid 12 px apart (18 px in image 2): no keypoint is near another's place
    xy1 = np.stack(np.meshgrid(np.arange(30, 120, 12.0), np.arange(30, 120, 12.0)), -1)
    xy1 = xy1.reshape(-1, 2)[:60]
    s1 = rng.uniform(1, 5, 60)
    xy2 = E._project(H, xy1)
    s2 = s1 * E.local_scale(H, xy1)
    f1 = _features(xy1, s1, np.eye(60, 128))
    # every keypoint found again (some 2 px off): 1; a second orientation counts once
    jitter = xy2 + np.where(np.arange(60)[:, None] % 2 == 0, 2.0 / np.sqrt(2), 0.0)
    f2 = _features(np.r_[jitter, jitter[:5]], np.r_[s2, s2[:5]], np.eye(65, 128))
    assert E.repeatability(H, f1, f2, (150, 200), (300, 400)) == 1.0
    # 4 px off, or twice the scale: not the same keypoint; half of them moved: 0.5
    far = _features(xy2 + 4.0, s2, np.eye(60, 128))
    assert E.repeatability(H, f1, far, (150, 200), (300, 400)) == 0.0
    big = _features(xy2, 2 * s2, np.eye(60, 128))
    assert E.repeatability(H, f1, big, (150, 200), (300, 400)) == 0.0
    assert E.repeatability(H, f1, big, (150, 200), (300, 400), scale_test=False) == 1.0
    half = _features(np.where(np.arange(60)[:, None] < 30, xy2, xy2 + 5), s2, np.eye(60, 128))
    assert E.repeatability(H, f1, half, (150, 200), (300, 400)) == 0.5


def test_repeatability_counts_only_the_overlap():
    H = np.array([[1, 0, 100.0], [0, 1, 0], [0, 0, 1]])  # shift right: half leaves image 2
    xy1 = np.array([[10.0, 10], [20, 20], [150, 10], [160, 20]])
    f1 = _features(xy1, [2, 2, 2, 2], np.eye(4, 8))
    f2 = _features(E._project(H, xy1[:2]), [2, 2], np.eye(2, 8))
    assert E.repeatability(H, f1, f2, (100, 200), (100, 200)) == 1.0


def test_precision_and_correct_matches():
    H = E._rot_scale(20, 1.0, 100, 100)
    xy1 = np.array([[10.0, 10], [50, 50], [80, 20]])
    d = np.eye(3, 16)
    f1 = _features(xy1, [2, 2, 2], d)
    q = E._project(H, xy1)
    q[2] += 10  # the third descriptor matches a point 10 px from where it should be
    s = E.match_scores(H, f1, _features(q, [2, 2, 2], d))
    assert s["ratio"] == {"matches": 3, "correct": 2, "precision": 2 / 3}


def test_warps_map_the_centre_and_shrink_the_top_of_tilts():
    w, h = 300, 200
    for name, group, H, _ in E.warps(w, h):
        assert group in E.GROUPS
        if group in ("rotation", "scale"):
            np.testing.assert_allclose(E._project(H, np.array([[149.5, 99.5]])), [[149.5, 99.5]])
    H = dict((n, H) for n, _, H, _ in E.warps(w, h))["tilt0.3"]
    top = E._project(H, np.array([[0.0, 0], [w - 1, 0]]))
    assert abs((top[1, 0] - top[0, 0]) / (w - 1) - 0.4) < 1e-6


def test_quick_run_prints_and_saves(tmp_path, monkeypatch, capsys, images_dir):
    pytest.importorskip("cv2")
    monkeypatch.setattr("benchmarks._common.RESULTS", tmp_path)
    assert E.main(["--quick", "--methods", "minifeat,accurate,opencv",
                   "--images", str(images_dir)]) == 0
    out = capsys.readouterr().out
    assert "minifeat" in out and "accurate" in out and "opencv" in out
    res = json.loads((tmp_path / "eval_sift.json").read_text())
    s = res["summary"]
    assert set(s) == {"minifeat", "accurate", "opencv"}
    assert len(res["records"]) == 3 * len(E.QUICK_WARPS)
    for m in s:  # sane, not planted: a 256 px photo under mild warps matches well
        assert 0.5 < s[m]["ratio"]["precision"] <= 1 and 0.2 < s[m]["repeatability"] <= 1
    # minifeat's default is OpenCV's SIFT: the same counts within a few percent
    a, b = s["minifeat"]["ratio"]["correct"], s["opencv"]["ratio"]["correct"]
    assert abs(a - b) <= 0.05 * b
