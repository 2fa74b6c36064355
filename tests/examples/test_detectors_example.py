"""Smoke tests of examples/detectors.py (the edges / corners / blobs tutorial)."""
import numpy as np
import pytest
from PIL import Image

from minidl import backend as B


def _write_scene(path, size=96):
    yy, xx = np.mgrid[:size, :size]
    im = np.zeros((size, size), np.uint8)
    im[20:50, 20:50] = 255                                             # a square: 4 corners
    im[(yy - 70) ** 2 + (xx - 68) ** 2 <= 10 ** 2] = 255               # a disk: 1 blob
    Image.fromarray(im).convert("RGB").save(path)


@pytest.mark.parametrize("backend", ["numpy", "strict"])
def test_detectors_example_writes_three_pngs(tmp_path, capsys, backend, load_example):
    _write_scene(tmp_path / "scene.png")
    out = tmp_path / "out"
    with B.use_backend("numpy"):        # main() switches the backend for good: restore it
        status = load_example("detectors").main([str(tmp_path / "scene.png"), "-o", str(out),
                                  "--backend", backend, "--max-sigma", "12"])
    assert B.get_backend().name == "numpy"
    text = capsys.readouterr().out
    assert status == 0, text
    for name in ("edges.png", "corners.png", "blobs.png"):
        with Image.open(out / name) as im:
            assert im.size == (96, 96) and im.mode == "RGB"
    assert "canny" in text and "harris" in text and "blobs" in text


def test_detectors_example_fails_on_a_blank_image(tmp_path, capsys, load_example):
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / "blank.png")
    status = load_example("detectors").main([str(tmp_path / "blank.png"), "-o", str(tmp_path / "out")])
    assert status == 1
    assert "nothing found for: edges, corners, blobs" in capsys.readouterr().out
