"""Smoke tests of the SIFT tutorials (examples/sift_keypoints.py, examples/sift_match.py)."""
import numpy as np
import pytest


def test_sift_keypoints_example(tmp_path, capsys, load_example):
    from PIL import Image

    y, x = np.mgrid[0:60, 0:70]
    img = (120 + 100 * np.exp(-((x - 35) ** 2 + (y - 30) ** 2) / 40.0)).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "blob.png")
    out = tmp_path / "kp.png"
    assert load_example("sift_keypoints").main([str(tmp_path / "blob.png"), "-o", str(out)]) == 0
    assert out.is_file() and "keypoints" in capsys.readouterr().out


@pytest.mark.data
def test_sift_match_example_finds_the_box(images_dir, tmp_path, capsys, load_example):
    out = tmp_path / "m.png"
    rc = load_example("sift_match").main([str(images_dir / "box.png"),
                                   str(images_dir / "box_in_scene.png"), "-o", str(out)])
    text = capsys.readouterr().out
    assert rc == 0 and out.is_file()
    n = int(text.split("inliers: ")[1].split()[0])
    assert n >= 40
