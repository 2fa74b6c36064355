"""minidl.data.datasets: MNIST and Fashion-MNIST, from synthetic files and the real ones.

The real-data tests need ``MINIDL_DATA`` (CI: ../shared/data) and are skipped otherwise.
"""
import dataclasses
import hashlib
import io

import numpy as np
import pytest

from minidl.data import (
    FASHION_MNIST_CLASSES, MNIST, MNIST_INFO, DatasetNotFoundError, FashionMNIST, load_dataset,
    load_fashion_mnist, load_mnist, write_idx,
)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """Each test decides about MINIDL_DATA itself; the cache is always under tmp_path."""
    monkeypatch.setenv("MINIDL_CACHE", str(tmp_path / "cache"))


def _md5_of_idx(a):
    buf = io.BytesIO()
    write_idx(buf, a, compress=False)
    return hashlib.md5(buf.getvalue()).hexdigest()


def _tiny(tmp_path, n_train=6, n_test=4, label_max=9, image_shape=(28, 28), n_labels=None):
    """A tiny MNIST look-alike in ``tmp_path/tiny/`` and the DatasetInfo that accepts it."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "tiny"
    folder.mkdir()
    md5s = {}
    for split, n in (("train", n_train), ("test", n_test)):
        prefix = "train" if split == "train" else "t10k"
        images = rng.integers(0, 256, (n,) + image_shape, dtype=np.uint8)
        labels = (np.arange(n if n_labels is None else n_labels) % (label_max + 1)).astype(
            np.uint8)
        for kind, a in (("images-idx3", images), ("labels-idx1", labels)):
            name = f"{prefix}-{kind}-ubyte.gz"
            write_idx(folder / name, a)
            md5s[name] = (_md5_of_idx(a),)
    info = dataclasses.replace(MNIST_INFO, name="Tiny", subdir="tiny", md5s=md5s, mirrors=(),
                               sizes={"train": n_train, "test": n_test})
    return info, folder


def test_load_dataset_reads_and_validates_a_tiny_copy(tmp_path):
    info, folder = _tiny(tmp_path)
    x, y = load_dataset(info, "train", data_dir=folder, progress=False)
    assert x.shape == (6, 28, 28) and x.dtype == np.uint8
    assert y.shape == (6,) and y.dtype == np.uint8
    np.testing.assert_array_equal(y, np.arange(6))
    x, y = load_dataset(info, "test", data_dir=tmp_path, progress=False)  # via <dir>/tiny/
    assert x.shape == (4, 28, 28)


def test_load_dataset_finds_files_through_minidl_data(tmp_path, monkeypatch):
    info, _ = _tiny(tmp_path)
    monkeypatch.setenv("MINIDL_DATA", str(tmp_path))
    assert load_dataset(info, "test", progress=False)[0].shape == (4, 28, 28)


def test_wrong_sample_count_is_rejected(tmp_path):
    info, folder = _tiny(tmp_path)
    info = dataclasses.replace(info, sizes={"train": 60000, "test": 10000})
    with pytest.raises(ValueError, match=r"Tiny train .*expected 60000 samples in the train "
                                         r"split, found 6"):
        load_dataset(info, "train", data_dir=folder, progress=False)


def test_images_and_labels_of_different_lengths_are_rejected(tmp_path):
    info, folder = _tiny(tmp_path, n_labels=5)
    with pytest.raises(ValueError, match="6 images but 5 labels"):
        load_dataset(info, "train", data_dir=folder, progress=False)


def test_out_of_range_labels_are_rejected(tmp_path):
    info, folder = _tiny(tmp_path, n_train=13, label_max=12)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 9\], found 12"):
        load_dataset(info, "train", data_dir=folder, progress=False)


def test_wrong_image_shape_is_rejected(tmp_path):
    info, folder = _tiny(tmp_path, image_shape=(27, 28))
    with pytest.raises(ValueError, match=r"images must be uint8 \(N, 28, 28\), got uint8 "
                                         r"\(6, 27, 28\)"):
        load_dataset(info, "train", data_dir=folder, progress=False)


def test_load_dataset_downloads_into_the_cache(tmp_path, monkeypatch, server):
    """End to end: nothing local, the first mirror 404s, the second serves the files."""
    monkeypatch.delenv("MINIDL_DATA", raising=False)
    info, folder = _tiny(tmp_path)
    for path in folder.iterdir():
        server.routes["/good/" + path.name] = path.read_bytes()
    info = dataclasses.replace(info, mirrors=(server.url("missing"), server.url("good")))
    x, y = load_dataset(info, "train", cache_dir=tmp_path / "dl", progress=False)
    assert x.shape == (6, 28, 28) and y.tolist() == list(range(6))
    assert sorted(p.name for p in (tmp_path / "dl" / "tiny").iterdir()) == [
        "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]


def test_bad_split_is_named():
    with pytest.raises(ValueError, match=r"split must be one of \('train', 'test'\), got 'val'"):
        load_mnist("val")


def test_offline_without_files_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("MINIDL_DATA", raising=False)
    with pytest.raises(DatasetNotFoundError, match=r"(?s)could not find the MNIST file "
                                                   r"'train-images-idx3-ubyte.gz' locally.*"
                                                   r"download=False.*MINIDL_DATA=ROOT"):
        load_mnist("train", data_dir=tmp_path / "nowhere", download=False)
    with pytest.raises(DatasetNotFoundError, match="Fashion-MNIST file 't10k-images"):
        load_fashion_mnist("test", download=False)


def test_dataset_class_indexing(tmp_path):
    info, folder = _tiny(tmp_path)

    class Tiny(MNIST):
        pass

    Tiny.info = info
    ds = Tiny("train", data_dir=folder, progress=False)
    assert len(ds) == 6 and ds.classes == tuple("0123456789")
    img, label = ds[2]
    assert img.shape == (28, 28) and label == 2 and isinstance(label, int)
    imgs, labels = ds[1:3]
    assert imgs.shape == (2, 28, 28) and labels.tolist() == [1, 2]
    assert repr(ds) == "Tiny(split='train', n=6, image_shape=(28, 28))"


def test_fashion_class_names():
    assert len(FASHION_MNIST_CLASSES) == 10
    assert FASHION_MNIST_CLASSES[0] == "T-shirt/top" and FASHION_MNIST_CLASSES[9] == "Ankle boot"
    assert FashionMNIST.info.classes == FASHION_MNIST_CLASSES


# --------------------------------------------------------------------------- real data

@pytest.mark.data
@pytest.mark.parametrize("split, n, first", [("train", 60000, 5), ("test", 10000, 7)])
def test_real_mnist(data_dir, monkeypatch, split, n, first):
    monkeypatch.setenv("MINIDL_DATA", str(data_dir))
    x, y = load_mnist(split, download=False)
    assert x.shape == (n, 28, 28) and x.dtype == np.uint8
    assert y.shape == (n,) and y.dtype == np.uint8
    assert y[0] == first
    assert set(np.unique(y).tolist()) == set(range(10))
    assert x.max() == 255 and x.min() == 0
    # the same files through an explicit data_dir
    x2, y2 = load_mnist(split, data_dir=data_dir / "mnist", download=False)
    assert np.array_equal(y, y2) and np.array_equal(x[:10], x2[:10])


@pytest.mark.data
@pytest.mark.parametrize("split, n", [("train", 60000), ("test", 10000)])
def test_real_fashion_mnist(data_dir, split, n):
    ds = FashionMNIST(split, data_dir=data_dir, download=False)
    assert ds.images.shape == (n, 28, 28) and ds.images.dtype == np.uint8
    assert ds.labels.shape == (n,) and ds.labels.dtype == np.uint8
    assert np.bincount(ds.labels, minlength=10).tolist() == [n // 10] * 10
    # the first test image is an ankle boot (label 9), the first training one too
    assert FASHION_MNIST_CLASSES[ds.labels[0]] == "Ankle boot"


@pytest.mark.data
def test_mnist_files_are_not_accepted_as_fashion(data_dir):
    from minidl.data import ChecksumError
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        load_fashion_mnist("test", data_dir=data_dir / "mnist", download=False)


def test_offline_error_names_every_missing_file_and_leaves_no_cache_folder(tmp_path,
                                                                           monkeypatch, server):
    """Issue 21 item 9: offline, the MNIST error named only the first missing file, and an
    empty cache folder was left behind.  Once the first download fails, the second file is
    looked for locally only (one network failure is enough)."""
    monkeypatch.delenv("MINIDL_DATA", raising=False)
    info = dataclasses.replace(MNIST_INFO, mirrors=(server.url("missing"),))
    with pytest.raises(DatasetNotFoundError, match=r"(?s)MNIST train split: 2 of 2 files "
                                                   r"missing: 'train-images-idx3-ubyte.gz', "
                                                   r"'train-labels-idx1-ubyte.gz'\n"
                                                   r"could not find the MNIST file 'train-images"
                                                   r".*not downloaded: the first download had "
                                                   r"already failed") as err:
        load_dataset(info, "train", data_dir=tmp_path / "nowhere", progress=False)
    assert err.value.missing == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]
    assert [p for p, _ in err.value.tried].count(server.url("missing")
                                                 + "train-images-idx3-ubyte.gz") == 1
    assert not any(p.startswith("http") and "labels" in p for p, _ in err.value.tried)
    assert not (tmp_path / "cache").exists()


def test_only_the_missing_files_are_named(tmp_path, monkeypatch):
    monkeypatch.delenv("MINIDL_DATA", raising=False)
    info, folder = _tiny(tmp_path)
    (folder / "train-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"Tiny train split: 1 of 2 files missing: "
                                                   r"'train-images-idx3-ubyte.gz'\n") as err:
        load_dataset(info, "train", data_dir=folder, download=False)
    assert err.value.missing == ["train-images-idx3-ubyte.gz"]
