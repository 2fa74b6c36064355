"""examples/scale_space.py: the stages it draws are SIFT's own (the kept extrema are the places
where SIFT puts keypoints), and the pictures are written."""
import numpy as np
from PIL import Image


def _blobs(path):
    """A synthetic photo: dark and light Gaussian blobs of several sizes, plus an edge."""
    yy, xx = np.mgrid[0:96, 0:128].astype(np.float64)
    img = np.full((96, 128), 0.5)
    for cx, cy, s, a in ((30, 30, 3, 0.4), (90, 40, 6, -0.35), (60, 70, 4, 0.3)):
        img += a * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s * s))
    img[:, 110:] -= 0.2
    Image.fromarray(np.clip(img * 255, 0, 255).astype(np.uint8)).save(path)


def test_scale_space_stages_are_sifts(tmp_path, capsys, load_example):
    png = tmp_path / "blobs.png"
    _blobs(png)
    ex = load_example("scale_space")
    assert ex.main([str(png), "--out", str(tmp_path / "o"), "--tile", "64"]) == 0
    text = capsys.readouterr().out
    kept = int(text.split("kept ")[1].split()[0])
    places = int(text.split(" at ")[1].split()[0])
    assert kept == places > 0                  # the drawn survivors are SIFT's keypoints
    with Image.open(tmp_path / "o" / "scale_space.png") as im:
        assert im.width == 6 * (64 + 4) + 4    # S + 3 Gaussians per octave row
    with Image.open(tmp_path / "o" / "keypoints.png") as im:
        assert im.size == (2 * 128 + 6, 96)


def test_scale_space_tests_reject_weak_and_edge_points(tmp_path, load_example):
    """A higher contrast threshold rejects more; a strict edge ratio rejects more."""
    from minifeat.io import load_image
    png = tmp_path / "blobs.png"
    _blobs(png)
    image = load_image(png, xp=np)
    ex = load_example("scale_space")
    base = ex.stages(image, 3, 0.04, 10.0)[1]
    strict = ex.stages(image, 3, 0.2, 1.5)[1]

    def kept(per):
        return sum(int((o["contrast_ok"] & o["edge_ok"]).sum()) for o in per)

    assert kept(strict) < kept(base)
    # the 26-neighbour candidates do not depend on the tests' edge threshold
    assert [len(o["found"][0]) for o in ex.stages(image, 3, 0.04, 1.5)[1]] == \
        [len(o["found"][0]) for o in base]
