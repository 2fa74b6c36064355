"""ImageNet preprocessing reads 16-bit, palette, CMYK and EXIF-rotated files as the 8-bit
photo they show (Pillow's own RGB conversion clips 16-bit grey at 255)."""
import numpy as np
import pytest
from PIL import Image

from minidl.data.imagenet import preprocess


@pytest.fixture
def photo():
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:64, 0:80]
    grey = (120 + 80 * np.sin(x / 7.0) * np.cos(y / 9.0) + rng.normal(0, 3, (64, 80)))
    return np.clip(grey, 0, 255).astype(np.uint8)


def _preprocess(path):
    return preprocess(str(path), resize=48, crop=40)


def test_16_bit_grey_png_reads_as_the_8_bit_one(photo, tmp_path):
    Image.fromarray(photo).save(tmp_path / "a8.png")
    Image.fromarray(photo.astype(np.uint16) * 257).save(tmp_path / "a16.png")
    with Image.open(tmp_path / "a16.png") as im:
        assert im.mode.startswith("I")
    np.testing.assert_allclose(_preprocess(tmp_path / "a16.png"),
                               _preprocess(tmp_path / "a8.png"), atol=1e-5)


def test_palette_cmyk_and_exif_rotation_read_as_the_rgb_photo(photo, tmp_path):
    rgb = np.stack([photo, 255 - photo, photo // 2], axis=-1)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    ref = _preprocess(tmp_path / "rgb.png")
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.tiff")
    np.testing.assert_allclose(_preprocess(tmp_path / "cmyk.tiff"), ref, atol=0.05)
    Image.fromarray(rgb).quantize(256).save(tmp_path / "p.png")
    assert np.abs(_preprocess(tmp_path / "p.png") - ref).mean() < 0.1
    rotated = Image.fromarray(np.rot90(rgb, -1).copy())  # stored turned clockwise...
    exif = Image.Exif()
    exif[0x0112] = 8                                     # ...and EXIF says: turn it back
    rotated.save(tmp_path / "exif.png", exif=exif)
    np.testing.assert_allclose(_preprocess(tmp_path / "exif.png"), ref, atol=1e-6)
