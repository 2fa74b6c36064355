"""minifeat.load_image reads CMYK files (TIFF and JPEG) as the RGB image they print (issue 21:
one image-reading path for palette, CMYK and EXIF orientation)."""
import numpy as np
from PIL import Image

from minifeat import load_image


def test_cmyk_tiff_and_jpeg_read_as_their_rgb(tmp_path, rng):
    rgb = (rng.random((24, 32, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    cmyk = Image.fromarray(rgb).convert("CMYK")
    cmyk.save(tmp_path / "c.tif")
    cmyk.save(tmp_path / "c.jpg", quality=100)
    ref = load_image(tmp_path / "rgb.png", xp=np)
    with Image.open(tmp_path / "c.tif") as im:
        assert im.mode == "CMYK"
    np.testing.assert_allclose(load_image(tmp_path / "c.tif", xp=np), ref, atol=1e-6)
    # JPEG: lossy, so within a few grey levels
    assert np.abs(load_image(tmp_path / "c.jpg", xp=np) - ref).mean() < 4 / 255
