"""minidl.data.loader and minidl.data.transforms: batches, shuffling, devices, augmentation."""
import numpy as np
import pytest

import minidl
from minidl import backend as B
from minidl.data import Compose, DataLoader, Normalize, RandomShift
from minidl.data.transforms import shift_images


def _data(n=10, shape=(28, 28)):
    images = (np.arange(n * int(np.prod(shape))) % 251).astype(np.uint8).reshape((n,) + shape)
    images[:, 0, 0] = np.arange(n)  # pixel (0, 0) identifies the sample
    return images, np.arange(n, dtype=np.uint8) % 10


def _ids(loader):
    """The sample ids of each batch (from pixel (0, 0)), on the host."""
    return [np.rint(B.to_host(x)[:, 0, 0, 0] * 255).astype(int).tolist() for x, _ in loader]


# --------------------------------------------------------------------------- batches

def test_batches_shapes_dtypes_and_device(backend):
    images, labels = _data(10)
    loader = DataLoader(images, labels, batch_size=4)
    assert len(loader) == 3
    batches = list(loader)
    assert [tuple(x.shape) for x, _ in batches] == [(4, 1, 28, 28)] * 2 + [(2, 1, 28, 28)]
    for x, y in batches:
        assert B.backend_of(x).name == backend.name and B.backend_of(y).name == backend.name
        assert x.dtype == np.float32 and y.dtype == np.int64
    x0 = B.to_host(batches[0][0])
    np.testing.assert_array_equal(x0[:, 0], images[:4].astype(np.float32) / 255)
    np.testing.assert_array_equal(B.to_host(batches[2][1]), labels[8:])


def test_batches_follow_the_default_dtype(backend):
    images, labels = _data(6)
    loader = DataLoader(images, labels, batch_size=6)
    B.set_default_dtype(np.float64)
    x, _ = next(iter(loader))
    assert x.dtype == np.float64
    x, _ = next(iter(DataLoader(images, labels, batch_size=6, dtype=np.float32)))
    assert x.dtype == np.float32


def test_other_image_layouts_and_float_images():
    feats = np.arange(12, dtype=np.float64).reshape(6, 2)
    x, y = next(iter(DataLoader(feats, np.zeros(6, np.int32), batch_size=4)))
    assert x.shape == (4, 2) and x.dtype == np.float32 and y.dtype == np.int64
    np.testing.assert_array_equal(x, feats[:4])  # floats are not rescaled
    rgb = np.full((3, 3, 8, 8), 255, np.uint8)
    x, _ = next(iter(DataLoader(rgb, np.zeros(3, np.int64), batch_size=3)))
    assert x.shape == (3, 3, 8, 8) and float(x.max()) == 1.0
    x, _ = next(iter(DataLoader(rgb, np.zeros(3, np.int64), batch_size=3, scale=1.0)))
    assert float(x.max()) == 255.0


def test_drop_last():
    images, labels = _data(10)
    loader = DataLoader(images, labels, batch_size=4, drop_last=True)
    assert len(loader) == 2
    assert [x.shape[0] for x, _ in loader] == [4, 4]
    assert len(DataLoader(images, labels, batch_size=5, drop_last=True)) == 2
    assert len(DataLoader(images, labels, batch_size=11, drop_last=True)) == 0
    assert len(DataLoader(images, labels, batch_size=11)) == 1


def test_no_shuffle_keeps_order():
    loader = DataLoader(*_data(10), batch_size=4)
    assert _ids(loader) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_shuffle_visits_each_sample_exactly_once_per_epoch(backend):
    images, labels = _data(23)
    loader = DataLoader(images, labels, batch_size=5, shuffle=True, seed=3)
    for _ in range(3):
        ids, seen_labels = [], []
        for x, y in loader:
            ids += np.rint(B.to_host(x)[:, 0, 0, 0] * 255).astype(int).tolist()
            seen_labels += B.to_host(y).tolist()
        assert sorted(ids) == list(range(23))
        assert seen_labels == [i % 10 for i in ids]  # images and labels stay paired


def test_seeded_shuffle_is_reproducible_and_differs_per_epoch():
    images, labels = _data(50)
    a = DataLoader(images, labels, batch_size=50, shuffle=True, seed=7)
    b = DataLoader(images, labels, batch_size=50, shuffle=True, seed=7)
    epochs_a = [_ids(a)[0] for _ in range(3)]
    epochs_b = [_ids(b)[0] for _ in range(3)]
    assert epochs_a == epochs_b
    assert epochs_a[0] != epochs_a[1] != epochs_a[2]
    assert epochs_a[0] != list(range(50))
    c = DataLoader(images, labels, batch_size=50, shuffle=True, seed=8)
    assert _ids(c)[0] != epochs_a[0]


def test_unseeded_shuffle_follows_minidl_seed():
    images, labels = _data(30)
    minidl.seed(5)
    first = _ids(DataLoader(images, labels, batch_size=30, shuffle=True))
    minidl.seed(5)
    again = _ids(DataLoader(images, labels, batch_size=30, shuffle=True))
    assert first == again


def test_dataset_object_and_repr():
    class DS:
        images, labels = _data(4)

    loader = DataLoader(DS(), batch_size=3, shuffle=True, seed=1)
    assert len(loader) == 2 and loader.num_samples == 4
    assert repr(loader).startswith("DataLoader(n=4, image_shape=(28, 28), batch_size=3, "
                                   "shuffle=True, seed=1")


def test_data_set_is_held_once_as_uint8():
    images, labels = _data(8)
    loader = DataLoader(images, labels, batch_size=4)
    assert loader.images.dtype == np.uint8
    assert np.shares_memory(loader.images, images)


def test_bad_arguments_are_named():
    images, labels = _data(4)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match=rf"DataLoader: batch_size must be an int >= 1, "
                                             rf"got {bad!r}"):
            DataLoader(images, labels, batch_size=bad)
    with pytest.raises(ValueError, match=r"images and labels must have the same length N; got "
                                         r"4 images \(shape \(4, 28, 28\)\) and 3 labels"):
        DataLoader(images, labels[:3])
    with pytest.raises(ValueError, match=r"labels must have shape \(N,\), got shape \(4, 1\)"):
        DataLoader(images, labels[:, None])
    with pytest.raises(TypeError, match="labels must be integer class indices, got dtype float"):
        DataLoader(images, labels.astype(np.float32))
    with pytest.raises(ValueError, match=r"images must have shape \(N, ...\) with at least 2 "
                                         r"dimensions, got shape \(4,\)"):
        DataLoader(labels, labels)
    with pytest.raises(ValueError, match="seed must be an int >= 0, got -1"):
        DataLoader(images, labels, seed=-1)
    with pytest.raises(TypeError, match="transform must be callable or None, got int"):
        DataLoader(images, labels, transform=3)
    with pytest.raises(TypeError, match="labels is required"):
        DataLoader(images)


def test_transform_runs_on_the_host_float_batch(backend):
    seen = []

    def spy(x):
        seen.append((type(x), x.dtype, x.shape, float(x.max())))
        return x * 2

    images, labels = _data(4)
    x, _ = next(iter(DataLoader(images, labels, batch_size=4, transform=spy)))
    assert len(seen) == 1 and seen[0][:3] == (np.ndarray, np.float32, (4, 1, 28, 28))
    assert seen[0][3] <= 1.0  # already scaled to [0, 1]
    assert B.backend_of(x).name == backend.name
    np.testing.assert_allclose(B.to_host(x)[:, 0], images[:4] / 255 * 2, rtol=1e-6)


# --------------------------------------------------------------------------- transforms

def test_shift_images_matches_a_per_image_reference(rng):
    x = rng.integers(0, 256, (12, 2, 7, 9), dtype=np.uint8)
    dy = rng.integers(-3, 4, 12)
    dx = rng.integers(-3, 4, 12)
    out = shift_images(x, dy, dx)
    assert out.shape == x.shape and out.dtype == x.dtype
    for k in range(12):
        ref = np.zeros_like(x[k])
        h, w = x.shape[-2:]
        src = x[k][:, max(0, -dy[k]):h - max(0, dy[k]), max(0, -dx[k]):w - max(0, dx[k])]
        ref[:, max(0, dy[k]):max(0, dy[k]) + src.shape[1],
            max(0, dx[k]):max(0, dx[k]) + src.shape[2]] = src
        np.testing.assert_array_equal(out[k], ref)


def test_shift_by_one_pixel_moves_a_dot():
    x = np.zeros((2, 1, 5, 5), np.float32)
    x[:, 0, 2, 2] = 1
    out = shift_images(x, [1, -2], [0, 1])
    assert np.argwhere(out[0, 0]).tolist() == [[3, 2]]
    assert np.argwhere(out[1, 0]).tolist() == [[0, 3]]


def test_random_shift_is_seeded_bounded_and_keeps_dtype(rng):
    x = np.zeros((200, 1, 28, 28), np.float32)
    x[:, 0, 14, 14] = 1
    out = RandomShift(2, seed=0)(x)
    assert out.shape == x.shape and out.dtype == np.float32
    pos = np.argwhere(out[:, 0] == 1)
    assert len(pos) == 200  # a centre pixel never falls off
    offsets = pos[:, 1:] - 14
    assert offsets.min() == -2 and offsets.max() == 2
    assert len({tuple(o) for o in offsets}) == 25  # all 5x5 shifts occur
    np.testing.assert_array_equal(RandomShift(2, seed=0)(x), out)
    assert not np.array_equal(RandomShift(2, seed=1)(x), out)
    u8 = RandomShift(2, seed=0)((x * 255).astype(np.uint8))
    assert u8.dtype == np.uint8 and np.array_equal(u8 == 255, out == 1)
    assert RandomShift(0)(x) is x
    assert repr(RandomShift(2)) == "RandomShift(max_shift=2, seed=None)"


def test_random_shift_in_a_loader_changes_only_positions(backend):
    images, labels = _data(16)
    loader = DataLoader(images, labels, batch_size=16, transform=RandomShift(1, seed=0))
    x, y = next(iter(loader))
    x = B.to_host(x)
    assert x.shape == (16, 1, 28, 28)
    assert not np.array_equal(x[:, 0], images / np.float32(255))
    np.testing.assert_array_equal(B.to_host(y), labels)


def test_normalize_scalar_and_per_channel():
    x = np.ones((2, 3, 4, 4), np.float32)
    out = Normalize(0.5, 0.25)(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, 2.0)
    out = Normalize([0.0, 1.0, 2.0], [1.0, 2.0, 4.0])(x)
    np.testing.assert_allclose(out[0, :, 0, 0], [1.0, 0.0, -0.25])
    assert repr(Normalize(0.1307, 0.3081)) == "Normalize(mean=0.1307, std=0.3081)"


def test_normalize_bad_arguments():
    with pytest.raises(ValueError, match=r"Normalize: std must be > 0, got \[0.0\]"):
        Normalize(0.0, 0.0)
    with pytest.raises(ValueError, match="mean and std must have equal lengths"):
        Normalize([0, 0], [1, 1, 1])
    with pytest.raises(ValueError, match=r"3 channel means/stds need a batch of shape "
                                         r"\(B, 3, ...\), got \(2, 1, 4, 4\)"):
        Normalize([0, 0, 0], 1)(np.zeros((2, 1, 4, 4), np.float32))
    with pytest.raises(TypeError, match="Normalize: the batch must be floating point, got uint8"):
        Normalize(0, 1)(np.zeros((2, 1, 4, 4), np.uint8))


def test_compose_applies_in_order():
    calls = []
    t = Compose([lambda x: calls.append("a") or x + 1, lambda x: calls.append("b") or x * 3])
    assert t(np.float32(1)) == 6 and calls == ["a", "b"]
    with pytest.raises(TypeError, match=r"Compose: transforms\[1\] must be callable, got int"):
        Compose([abs, 3])
    assert repr(Compose([RandomShift(2), Normalize(0, 1)])) == \
        "Compose([RandomShift(max_shift=2, seed=None), Normalize(mean=0, std=1)])"


def test_transforms_reject_device_arrays_clearly():
    with pytest.raises(TypeError, match="RandomShift: the batch must be a host numpy.ndarray"):
        RandomShift(1)([[[0]]])
    with pytest.raises(ValueError, match="RandomShift: max_shift must be a non-negative int, "
                                         "got -1"):
        RandomShift(-1)
