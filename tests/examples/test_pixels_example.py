"""examples/pixels.py on a synthetic image whose pixels are known."""
import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def photo(tmp_path):
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 0] = np.arange(30)[None, :] * 8          # red grows to the right
    rgb[..., 1] = np.arange(20)[:, None] * 12         # green grows downwards
    rgb[5, 7] = (255, 128, 0)
    path = tmp_path / "p.png"
    Image.fromarray(rgb).save(path)
    return path, rgb


def test_pixels_prints_values_hex_and_grey(photo, tmp_path, capsys, load_example):
    path, rgb = photo
    ex = load_example("pixels")
    out = tmp_path / "o"
    assert ex.main([str(path), "--at", "7,5", "--at", "29,19", "--crop", "4,3", "--size", "6",
                    "--cell", "36", "--width", "60", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "R=255 G=128 B=  0 = #FF8000" in text
    assert f"= {0.299 * 255 + 0.587 * 128:.1f}" in text
    r, g, b = rgb[19, 29]
    assert f"R={r:3d} G={g:3d} B={b:3d} = #{r:02X}{g:02X}{b:02X}" in text
    assert "Y = 0.299 R + 0.587 G + 0.114 B" in text
    with Image.open(out / "crop.png") as im:
        assert im.size == (216, 216)
        # the cell of pixel (7, 5) = crop (3, 2) is filled with its colour
        assert im.getpixel((3 * 36 + 33, 2 * 36 + 33)) == (255, 128, 0)
    with Image.open(out / "channels.png") as im:
        assert im.size == (5 * 66, 40 + 16)


def test_grey_matches_minifeat(photo, load_example):
    from minifeat import load_image
    path, rgb = photo
    np.testing.assert_allclose(load_example("pixels").grey(rgb) / 255,
                               load_image(path, xp=np), atol=1e-6)


def test_pixels_bad_points_are_clear_errors(photo, tmp_path, load_example):
    path, _ = photo
    ex = load_example("pixels")
    with pytest.raises(ValueError, match=r"--at 30,5 is outside the 30x20 image"):
        ex.main([str(path), "--at", "30,5", "--out", str(tmp_path)])
    with pytest.raises(ValueError, match=r"--crop 25,0 with --size 12 leaves the 30x20 image"):
        ex.main([str(path), "--crop", "25,0", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        ex.main([str(path), "--at", "3"])
