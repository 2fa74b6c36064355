"""predict_digit on photo-like digits (issue 21 item 3): its preparation as MNIST was made (the
paper's shading taken away, Otsu's threshold, the largest ink component, 20x20 box, centred by
mass in 28x28), the same result from 16-bit, palette, CMYK and EXIF-rotated files, and -- with
the CNN that ``python examples/mnist_cnn.py`` trains -- its accuracy on a generated set."""
from __future__ import annotations

import os
import pathlib

import numpy as np
import pytest
from PIL import Image

from photo_digits import fonts, photo_digit, photo_digit_set

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _font():
    faces = fonts()
    if not faces:
        pytest.skip("no scalable font (Pillow >= 10.1 or DejaVu) to draw a digit with")
    return faces[0][1]


@pytest.fixture(scope="module")
def photo():
    """A grey-paper 7: a lighting gradient, noise, blur, a slight rotation, off centre."""
    return photo_digit(7, np.random.default_rng(11), _font(), size=160, stroke=1)


def _ink_box(a, level=0.25):
    rows, cols = np.nonzero(a > level)
    return rows.min(), rows.max() + 1, cols.min(), cols.max() + 1


def test_a_grey_paper_digit_comes_out_as_mnist_digits_are(photo, tmp_path, load_example):
    Image.fromarray(photo).save(tmp_path / "seven.png")
    digit = load_example("predict_digit").prepare_digit(tmp_path / "seven.png")
    assert digit.shape == (28, 28) and digit.dtype == np.float32
    # white ink on black: the paper (most of the frame) is 0, the strokes' core 1
    assert digit.max() == pytest.approx(1.0)
    assert np.median(digit) == 0.0 and (digit > 0.05).mean() < 0.35
    assert digit[:, :3].max() == 0 and digit[:, -3:].max() == 0   # a 7: narrower than tall
    # fitted in 20x20, the longer side filling it
    r0, r1, c0, c1 = _ink_box(digit, 0.05)
    assert max(r1 - r0, c1 - c0) in (19, 20, 21) and min(r1 - r0, c1 - c0) < 18
    # centred by its centre of mass
    total = digit.sum()
    cy = (digit.sum(axis=1) * np.arange(28)).sum() / total
    cx = (digit.sum(axis=0) * np.arange(28)).sum() / total
    assert abs(cy - 13.5) <= 0.75 and abs(cx - 13.5) <= 0.75


def test_light_ink_on_dark_paper_and_dark_on_light_give_the_same_digit(photo, load_example):
    prep = load_example("_digit_prep")
    dark_on_light = prep.prepare_gray(photo / 255.0)
    light_on_dark = prep.prepare_gray(1 - photo / 255.0)
    np.testing.assert_allclose(light_on_dark, dark_on_light, atol=1e-5)


def test_the_largest_ink_component_is_kept(photo, load_example):
    """A smudge and a speck beside the digit do not move its box or centre."""
    prep = load_example("_digit_prep")
    clean = prep.prepare_gray(photo / 255.0)
    smudged = photo.copy()
    smudged[5:15, 140:150] = 40      # a dark speck in a corner
    smudged[150:153, 10:40] = 60     # a pencil line at the bottom
    np.testing.assert_allclose(prep.prepare_gray(smudged / 255.0), clean, atol=0.05)


def test_blank_paper_with_a_gradient_and_noise_has_no_digit(load_example):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:120, 0:120] / 120
    paper = 0.7 + 0.2 * (xx - 0.5) + rng.normal(0, 0.02, (120, 120))
    prep = load_example("_digit_prep")
    with pytest.raises(prep.NoDigitFound):
        prep.prepare_gray(paper)


def _variants(photo, folder):
    """The same photo as an 8-bit PNG, 16-bit PNG, palette PNG, CMYK TIFF and an EXIF-rotated
    PNG (stored turned a quarter left, its Orientation tag 6 saying to turn it right)."""
    files = {}
    files["8-bit"] = folder / "d8.png"
    Image.fromarray(photo).save(files["8-bit"])
    files["16-bit"] = folder / "d16.png"
    Image.fromarray(photo.astype(np.uint16) * 257).save(files["16-bit"])
    pal = Image.frombytes("P", photo.shape[::-1], photo.tobytes())
    pal.putpalette([v for g in range(256) for v in (g, g, g)])
    files["palette"] = folder / "dp.png"
    pal.save(files["palette"])
    files["CMYK"] = folder / "dc.tif"
    Image.fromarray(np.stack([photo] * 3, axis=-1)).convert("CMYK").save(files["CMYK"])
    turned = Image.fromarray(np.ascontiguousarray(np.rot90(photo, 1)))
    exif = turned.getexif()
    exif[0x0112] = 6
    files["EXIF-rotated"] = folder / "dr.png"
    turned.save(files["EXIF-rotated"], exif=exif.tobytes())
    return files


def test_16_bit_palette_cmyk_and_exif_rotated_files_prepare_alike(photo, tmp_path,
                                                                   load_example):
    predict = load_example("predict_digit")
    files = _variants(photo, tmp_path)
    for kind, mode in (("palette", "P"), ("CMYK", "CMYK"), ("16-bit", "I;16")):
        with Image.open(files[kind]) as im:
            assert im.mode == mode, kind
    ref = predict.prepare_digit(files["8-bit"])
    for kind, path in files.items():
        np.testing.assert_allclose(predict.prepare_digit(path), ref, atol=1e-3, err_msg=kind)


def _trained_model():
    path = pathlib.Path(os.environ.get("MINIDL_DIGIT_MODEL", ROOT / "runs/mnist_cnn/best.npz"))
    if not path.is_file():
        pytest.skip(f"no trained CNN at {path}: run `python examples/mnist_cnn.py` (or set "
                    "MINIDL_DIGIT_MODEL to its best.npz)")
    return path


@pytest.mark.slow
def test_predict_digit_accuracy_on_photo_like_digits(load_example, capsys):
    """At least 95% of 60 photo-like digits (7 fonts, stroke widths 0-3, grey paper, lighting
    gradients, noise, blur, rotation up to 10 degrees, off centre) classified right by the
    CNN that examples/mnist_cnn.py trains."""
    import minidl
    from minidl.functions import softmax

    model_path = _trained_model()
    predict = load_example("predict_digit")
    cnn = load_example("mnist_cnn")
    model = minidl.fuse(cnn.build_cnn().load(str(model_path)).eval())
    photos = photo_digit_set(60, seed=0)
    digits = np.stack([predict.prepare_gray(img / 255.0) for _, img, _ in photos])
    with minidl.no_grad():
        probs = minidl.to_host(softmax(model(minidl.tensor(digits[:, None]))).data)
    guess = probs.argmax(axis=1)
    truth = np.array([d for d, _, _ in photos])
    accuracy = float((guess == truth).mean())
    with capsys.disabled():
        print(f"\npredict_digit on {len(photos)} photo-like digits: {accuracy:.1%} right")
        for i, ((d, _, what), k) in enumerate(zip(photos, guess)):
            if k != d:
                print(f"  {what}: read as {k} ({probs[i, k]:.0%})")
    assert accuracy >= 0.95


@pytest.mark.slow
def test_predict_digit_reads_every_file_kind_alike(photo, tmp_path, capsys, load_example):
    model_path = _trained_model()
    predict = load_example("predict_digit")
    answers = {}
    for kind, path in _variants(photo, tmp_path).items():
        assert predict.main([str(path), "--model", str(model_path)]) == 0
        answers[kind] = capsys.readouterr().out.splitlines()[1].split()[0]
    assert set(answers.values()) == {"7"}, answers
