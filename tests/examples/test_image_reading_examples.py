"""The examples read images through ``minifeat.load_image``: a 16-bit PNG gives what the 8-bit
file gives (Pillow's own conversion clipped 16-bit values to white)."""
import numpy as np
from PIL import Image

from minidl import backend as B


def _scene(size=120):
    """A synthetic grey picture: a gradient, a square, a disk and a few dark dots (uint8)."""
    yy, xx = np.mgrid[:size, :size]
    im = 40 + (xx * 60 // size)
    im[20:55, 15:50] = 230                                        # a square: 4 corners
    im[(yy - 85) ** 2 + (xx - 80) ** 2 <= 12 ** 2] = 200          # a disk: a blob
    for y, x in ((30, 90), (95, 25), (70, 60)):
        im[y - 2:y + 3, x - 2:x + 3] = 10
    return im.astype(np.uint8)


def _write_8_and_16_bit(tmp_path):
    im8 = _scene()
    Image.fromarray(im8).save(tmp_path / "scene8.png")
    im16 = Image.fromarray(im8.astype(np.uint16) * 257)           # same levels, 16 bits
    if im16.mode != "I;16":
        im16 = im16.convert("I;16")
    im16.save(tmp_path / "scene16.png")
    with Image.open(tmp_path / "scene16.png") as check:
        assert check.mode.startswith("I"), check.mode
    return tmp_path / "scene8.png", tmp_path / "scene16.png"


def _counts(detectors, path):
    from minifeat.blobs import blob_log
    from minifeat.corners import corner_harris, corner_peaks
    from minifeat.edges import edges_canny
    _, gray = detectors.load_gray(path, 800)
    edges = int(B.to_host(edges_canny(gray, sigma=2.0)).sum())
    corners = len(B.to_host(corner_peaks(corner_harris(gray, k=0.05, sigma=1.0),
                                         min_distance=5, threshold_rel=0.05)))
    blobs = len(B.to_host(blob_log(gray, min_sigma=3, max_sigma=15, num_sigma=5,
                                   threshold=0.2)))
    return gray, np.array([edges, corners, blobs])


def test_detectors_reads_a_16_bit_png_like_the_8_bit_one(tmp_path, load_example):
    p8, p16 = _write_8_and_16_bit(tmp_path)
    detectors = load_example("detectors")
    g8, c8 = _counts(detectors, p8)
    g16, c16 = _counts(detectors, p16)
    np.testing.assert_allclose(g16, g8, atol=1e-6)
    assert g8.max() > 0.85 and g8.min() < 0.1       # not clipped to white
    assert (c8 > 0).all(), c8
    assert (np.abs(c16 - c8) <= np.maximum(1, 0.01 * c8)).all(), (c8, c16)


def test_detectors_main_prints_the_same_counts_for_16_bit(tmp_path, capsys, load_example):
    p8, p16 = _write_8_and_16_bit(tmp_path)
    detectors = load_example("detectors")
    texts = []
    for p in (p8, p16):
        with B.use_backend("numpy"):
            status = detectors.main([str(p), "-o", str(tmp_path / p.stem), "--max-sigma", "12"])
        texts.append([line.split()[:3] for line in capsys.readouterr().out.splitlines()
                      if line.startswith("  ")])
        assert status == 0
    assert texts[0] == texts[1]


def test_predict_digit_prepares_a_16_bit_png_like_the_8_bit_one(tmp_path, load_example):
    im = np.full((60, 50), 235, np.uint8)                          # light paper
    im[10:50, 22:30] = 20                                          # a dark stroke: a "1"
    im[10:16, 16:30] = 20
    Image.fromarray(im).save(tmp_path / "d8.png")
    Image.fromarray(im.astype(np.uint16) * 257).save(tmp_path / "d16.png")
    predict = load_example("predict_digit")
    a, b = predict.prepare_digit(tmp_path / "d8.png"), predict.prepare_digit(tmp_path / "d16.png")
    assert a.max() > 0.5
    np.testing.assert_allclose(b, a, atol=1e-4)


def test_detectors_counts_are_the_same_for_palette_cmyk_and_exif_rotated_files(tmp_path,
                                                                                load_example):
    """The issue's check: palette, CMYK and EXIF-rotated copies of the photo give the 8-bit
    file's detector counts (within 1%)."""
    im8 = _scene()
    rgb = Image.fromarray(np.stack([im8] * 3, axis=-1))
    rgb.save(tmp_path / "rgb.png")
    rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=256).save(tmp_path / "pal.png")
    rgb.convert("CMYK").save(tmp_path / "cmyk.tiff")
    exif = Image.Exif()
    exif[0x0112] = 6                                     # display: turn 90 degrees clockwise
    Image.fromarray(np.stack([np.rot90(im8)] * 3, axis=-1)).save(tmp_path / "exif.png",
                                                               exif=exif)
    detectors = load_example("detectors")
    g_ref, ref = _counts(detectors, tmp_path / "rgb.png")
    assert (ref > 0).all(), ref
    for name in ("pal.png", "cmyk.tiff", "exif.png"):
        g, c = _counts(detectors, tmp_path / name)
        np.testing.assert_allclose(g, g_ref, atol=2e-3, err_msg=name)   # upright, same levels
        assert (np.abs(c - ref) <= np.maximum(1, 0.01 * ref)).all(), (name, ref, c)
