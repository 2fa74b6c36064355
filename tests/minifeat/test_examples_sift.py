"""Smoke tests of the SIFT tutorials (examples/sift_keypoints.py, examples/sift_match.py)."""
import importlib.util
import pathlib

import numpy as np
import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_sift_keypoints_example(tmp_path, capsys):
    from PIL import Image

    y, x = np.mgrid[0:60, 0:70]
    img = (120 + 100 * np.exp(-((x - 35) ** 2 + (y - 30) ** 2) / 40.0)).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "blob.png")
    out = tmp_path / "kp.png"
    assert _load("sift_keypoints").main([str(tmp_path / "blob.png"), "-o", str(out)]) == 0
    assert out.is_file() and "keypoints" in capsys.readouterr().out


@pytest.mark.data
def test_sift_match_example_finds_the_box(images_dir, tmp_path, capsys):
    out = tmp_path / "m.png"
    rc = _load("sift_match").main([str(images_dir / "box.png"),
                                   str(images_dir / "box_in_scene.png"), "-o", str(out)])
    text = capsys.readouterr().out
    assert rc == 0 and out.is_file()
    n = int(text.split("inliers: ")[1].split()[0])
    assert n >= 40
