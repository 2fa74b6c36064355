import numpy as np
import pytest

from minidl import backend as B
from minifeat.io import REC601, as_gray_float, load_image

Image = pytest.importorskip("PIL.Image")


def _rgb(rng, h=12, w=17):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_rgb_file_uses_rec601(tmp_path, rng):
    a = _rgb(rng)
    Image.fromarray(a).save(tmp_path / "a.png")
    g = B.to_host(load_image(tmp_path / "a.png"))
    want = (a.astype(np.float64) / 255.0) @ np.array(REC601)
    assert g.dtype == np.float32 and g.shape == (12, 17)
    np.testing.assert_allclose(g, want, atol=1e-6)


def test_rgba_palette_gray_and_16bit(tmp_path, rng):
    a = _rgb(rng)
    Image.fromarray(a).convert("RGBA").save(tmp_path / "a.png")
    Image.fromarray(a).convert("P").save(tmp_path / "p.png")
    Image.fromarray(a[..., 0]).save(tmp_path / "l.png")
    v16 = rng.integers(0, 65536, (9, 11)).astype(np.uint16)
    Image.fromarray(v16).save(tmp_path / "i16.png")
    rgba = B.to_host(load_image(tmp_path / "a.png"))
    np.testing.assert_allclose(rgba, (a / 255.0) @ np.array(REC601), atol=1e-6)
    pal = B.to_host(load_image(tmp_path / "p.png"))
    assert pal.shape == (12, 17) and 0 <= pal.min() and pal.max() <= 1
    np.testing.assert_allclose(B.to_host(load_image(tmp_path / "l.png")), a[..., 0] / 255.0,
                               atol=1e-6)
    i16 = B.to_host(load_image(tmp_path / "i16.png"))
    np.testing.assert_allclose(i16, v16 / 65535.0, atol=1e-6)


def test_exif_rotation_is_applied(tmp_path):
    a = np.zeros((10, 20), np.uint8)
    a[0, 0] = 255
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 CW to display
    im.save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=100)
    g = B.to_host(load_image(tmp_path / "r.jpg"))
    assert g.shape == (20, 10)


def test_unreadable_and_missing(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match="cannot read .*bad.png.* as an image"):
        load_image(tmp_path / "bad.png")
    with pytest.raises(FileNotFoundError, match="image file not found"):
        load_image(tmp_path / "nope.png")


def test_arrays(xp, rng):
    a = _rgb(rng)
    g = load_image(xp.asarray(a))
    assert B.backend_of(g).xp is xp and g.dtype == xp.float32
    np.testing.assert_allclose(B.to_host(g), (a / 255.0) @ np.array(REC601), atol=1e-6)
    u8 = load_image(xp.asarray(a[..., 0]))
    np.testing.assert_allclose(B.to_host(u8), a[..., 0] / 255.0, atol=1e-7)
    f = load_image(xp.asarray(a[..., 0] / 255.0))
    assert f.dtype == xp.float32


def test_bad_arrays_name_the_argument(rng):
    with pytest.raises(ValueError, match=r"`image` must be 2-D .* got shape \(4, 5, 2\)"):
        as_gray_float(np.zeros((4, 5, 2)))
    with pytest.raises(TypeError, match="`image` must be a file path or an array"):
        load_image(3.5)
