"""ImageFolder (classes, EXIF orientation, clear errors), ImageFolderLoader (threaded decoding,
seeded, normalised batches) and the per-image RGB augmentation transforms."""
import threading

import numpy as np
import pytest
from PIL import Image

import minidl
from minidl.data import ImageFolder, ImageFolderLoader, open_rgb
from minidl.data.image_folder import UnreadableImageError
from minidl.data.imagenet import IMAGENET_MEAN, IMAGENET_STD
from minidl.data.image_transforms import (ColorJitter, ImageCompose,
                                          RandomHorizontalFlip, RandomResizedCrop, ResizeCenterCrop)


def _photo(rng, h=40, w=60):
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for c, name in enumerate(["zebra", "ant"]):   # sorted: ant = 0, zebra = 1
        (tmp_path / name).mkdir()
        for k in range(5):
            a = _photo(rng)
            a[..., c] = 255                       # class colour, to check labels
            Image.fromarray(a).save(tmp_path / name / f"{k}.{'png' if k % 2 else 'JPG'}")
    (tmp_path / "ant" / "notes.txt").write_text("not an image")
    (tmp_path / "README").write_text("a file beside the class folders is ignored")
    return tmp_path


def test_classes_samples_and_labels(folder):
    ds = ImageFolder(folder)
    assert ds.classes == ("ant", "zebra") and ds.class_to_idx == {"ant": 0, "zebra": 1}
    assert len(ds) == 10 and ds.targets.tolist() == [0] * 5 + [1] * 5
    image, label = ds[6]                            # zebra/1.png
    assert label == 1 and image.mode == "RGB" and image.size == (60, 40)
    assert ds.samples[6][0].name == "1.png"
    assert np.asarray(image)[..., 0].min() == 255   # zebra was saved with channel 0 = 255


def test_exif_orientation_and_grey_and_rgba(tmp_path):
    a = np.zeros((20, 30, 3), np.uint8)
    a[:, :10] = 255                                # white band on the left of the upright view
    exif = Image.Exif()
    exif[0x0112] = 6                               # "rotate 90 clockwise to view"
    Image.fromarray(a).transpose(Image.Transpose.ROTATE_90).save(tmp_path / "r.jpg",
                                                                  exif=exif, quality=95)
    up = np.asarray(open_rgb(tmp_path / "r.jpg"))
    assert up.shape == (20, 30, 3)
    assert up[:, :8].mean() > 200 and up[:, 12:].mean() < 50
    Image.fromarray(np.full((5, 6), 7, np.uint8)).save(tmp_path / "g.png")
    Image.fromarray(np.full((5, 6, 4), 9, np.uint8), "RGBA").save(tmp_path / "a.png")
    for name in ("g.png", "a.png"):
        im = open_rgb(tmp_path / name)
        assert im.mode == "RGB" and im.size == (6, 5)


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ImageFolder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="is empty"):
        ImageFolder(tmp_path / "empty")
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(flat / "x.png")
    with pytest.raises(ValueError, match="no class sub-folders"):
        ImageFolder(flat)
    (tmp_path / "c" / "a").mkdir(parents=True)
    (tmp_path / "c" / "b").mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "c" / "a" / "x.png")
    with pytest.raises(ValueError, match=r"class folder .*b' holds no image"):
        ImageFolder(tmp_path / "c")
    (tmp_path / "c" / "b" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    ds = ImageFolder(tmp_path / "c")
    with pytest.raises(UnreadableImageError, match="broken.jpg"):
        ds[1]
    with pytest.raises(UnreadableImageError, match="broken.jpg"):
        list(ImageFolderLoader(ds, batch_size=2))


def test_loader_batches_are_normalised_shuffled_and_seeded(folder):
    ds = ImageFolder(folder, transform=ResizeCenterCrop(16, 20))
    plain = ImageFolderLoader(ds, batch_size=4)
    assert len(plain) == 3 and len(ImageFolderLoader(ds, 4, drop_last=True)) == 2
    batches = list(plain)
    x = np.concatenate([b[0] for b in batches])
    y = np.concatenate([b[1] for b in batches])
    assert batches[0][0].shape == (4, 3, 16, 16) and x.dtype == np.float32
    assert y.dtype == np.int64 and y.tolist() == ds.targets.tolist()
    # un-normalise: pixels in [0, 1], and image 0 is ResizeCenterCrop of the file
    pixels = x * np.array(IMAGENET_STD)[:, None, None] + np.array(IMAGENET_MEAN)[:, None, None]
    expect = np.asarray(ResizeCenterCrop(16, 20)(open_rgb(ds.samples[0][0])), np.float64) / 255
    np.testing.assert_allclose(pixels[0].transpose(1, 2, 0), expect, atol=1e-5)
    aug = ImageFolder(folder, transform=ImageCompose([RandomResizedCrop(12),
                                                      RandomHorizontalFlip(),
                                                      ColorJitter(0.4, 0.4, 0.4)]))

    def run(workers):
        out = list(ImageFolderLoader(aug, 3, shuffle=True, seed=5, workers=workers))
        return np.concatenate([b[0] for b in out]), np.concatenate([b[1] for b in out])
    x1, y1 = run(1)
    x4, y4 = run(4)   # the same augmented batches whichever threads decode them
    np.testing.assert_array_equal(x1, x4)
    np.testing.assert_array_equal(y1, y4)
    assert sorted(y1.tolist()) == sorted(ds.targets.tolist()) and y1.tolist() != y.tolist()


def test_loader_decodes_in_background_threads(folder, monkeypatch):
    ds = ImageFolder(folder, transform=ResizeCenterCrop(8))
    threads = set()
    load = ds.load
    monkeypatch.setattr(ds, "load", lambda i, rng=None: (threads.add(
        threading.current_thread().name), load(i, rng))[1])
    it = iter(ImageFolderLoader(ds, batch_size=2, prefetch=3))
    next(it)
    assert all(t.startswith("minidl-decode") for t in threads)
    list(it)


def test_loader_refuses_mixed_sizes(folder):
    Image.fromarray(np.zeros((9, 9, 3), np.uint8)).save(folder / "ant" / "small.png")
    with pytest.raises(ValueError, match="images of one size"):
        list(ImageFolderLoader(ImageFolder(folder), batch_size=10))
    with pytest.raises(ValueError, match="workers must be an int >= 1"):
        ImageFolderLoader(ImageFolder(folder), workers=0)


def test_split_is_stratified(folder):
    ds = ImageFolder(folder)
    train, val = ds.split(0.4, seed=1)
    assert sorted(train.tolist() + val.tolist()) == list(range(10))
    assert np.bincount(ds.targets[val]).tolist() == [2, 2]
    sub = ds.subset(val, ResizeCenterCrop(8))
    assert len(sub) == 4 and sub.classes == ds.classes


# -- augmentation ---------------------------------------------------------------------------

def test_random_resized_crop_shapes_and_boxes():
    rng = np.random.default_rng(0)
    a = _photo(rng, 50, 80)
    crop = RandomResizedCrop((24, 32), seed=0)
    out = crop(a)
    assert out.shape == (24, 32, 3) and out.dtype == np.uint8
    assert crop(Image.fromarray(a)).size == (32, 24)
    for _ in range(200):
        left, top, w, h = crop.box(80, 50, rng)
        assert 0 <= left and 0 <= top and left + w <= 80 and top + h <= 50
        assert 0.08 * 4000 * 0.8 <= w * h <= 4000
        assert 3 / 4 * 0.8 <= w / h <= 4 / 3 * 1.25
    # the whole image at ratio 1: scale (1, 1) on a square is a plain resize
    sq = _photo(rng, 30, 30)
    whole = RandomResizedCrop(15, scale=(1, 1), ratio=(1, 1), seed=3)(sq)
    ref = np.asarray(Image.fromarray(sq).resize((15, 15), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(whole, ref)
    # seeded: the same seed gives the same crops; a fallback when nothing fits
    assert np.array_equal(RandomResizedCrop(8, seed=1)(a), RandomResizedCrop(8, seed=1)(a))
    assert RandomResizedCrop(8, scale=(1, 1), ratio=(4, 5)).box(80, 50, rng) == (0, 15, 80, 20)
    with pytest.raises(ValueError, match="scale"):
        RandomResizedCrop(8, scale=(0.5, 0.1))


def test_flip_and_jitter_invariants():
    rng = np.random.default_rng(1)
    a = _photo(rng)
    np.testing.assert_array_equal(RandomHorizontalFlip(1.0)(a), a[:, ::-1])
    np.testing.assert_array_equal(RandomHorizontalFlip(0.0)(a), a)
    flips = [np.array_equal(RandomHorizontalFlip(seed=None)(a, rng=rng), a) for _ in range(200)]
    assert 60 < sum(flips) < 140
    np.testing.assert_array_equal(ColorJitter()(a), a)                 # all zero: identity
    np.testing.assert_array_equal(ColorJitter(brightness=(1, 1))(a), a)
    grey = ColorJitter(saturation=(0, 0))(a)
    assert grey.shape == a.shape and np.abs(grey.astype(int) - grey[..., :1]).max() <= 1
    dark = ColorJitter(brightness=(0.5, 0.5))(a)
    np.testing.assert_allclose(dark, a * 0.5, atol=1)
    flat = ColorJitter(contrast=(0, 0))(a)
    assert flat.std(axis=(0, 1)).max() < 1          # contrast 0: one mean grey
    j = ColorJitter(0.4, 0.4, 0.4, seed=7)
    out = j(Image.fromarray(a))
    assert out.size == (60, 40) and out.mode == "RGB"
    assert np.array_equal(np.asarray(out), ColorJitter(0.4, 0.4, 0.4, seed=7)(a))
    names = [n for n, f in j.factors(np.random.default_rng(0))]
    assert sorted(names) == ["brightness", "contrast", "saturation"]
    assert all(0.6 <= f <= 1.4 for _, f in j.factors(np.random.default_rng(2)))
    with pytest.raises(ValueError, match="brightness must be >= 0"):
        ColorJitter(brightness=-1)
    with pytest.raises(TypeError, match="PIL image or a host uint8"):
        ColorJitter(0.1)([[1, 2]])


def test_compose_passes_the_rng():
    a = _photo(np.random.default_rng(2))
    t = ImageCompose([RandomResizedCrop(10), RandomHorizontalFlip(), ColorJitter(0.3, 0.3)])
    one = t(a, rng=np.random.default_rng(9))
    assert one.shape == (10, 10, 3)
    np.testing.assert_array_equal(one, t(a, rng=np.random.default_rng(9)))
    minidl.seed(0)
    first = t(a)
    minidl.seed(0)
    np.testing.assert_array_equal(first, t(a))   # without rng: minidl's seeded host Generator
