"""Dense SIFT and bags of visual words (minifeat/dense_sift.py, minifeat/bovw.py).

Planted answers (grid positions, toy tf-idf corpus, a word's own descriptor), agreement with
``SIFT.compute`` at the same keypoints, invariants of the encodings (sums, norms), the saved
file format, and a tiny end-to-end separation of two synthetic textures."""
import math

import numpy as np
import pytest

from minidl import backend as B
from minifeat import SIFT
from minifeat.bovw import BagOfWords
from minifeat.dense_sift import DenseSIFT, dense_grid
from minifeat.filters import gaussian_blur


def _images(xp, n=2, size=28, seed=0):
    """Smooth random images in [0, 1] (float32, on xp)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        a = rng.random((size, size)).astype(np.float32)
        out.append(B.to_host(gaussian_blur(xp.asarray(a), 1.2)))
    return xp.asarray(np.stack(out))


def _stripes(rng, vertical, n, size=28):
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    out = []
    for _ in range(n):
        period = rng.uniform(5, 8)
        t = (xx if vertical else yy) * (2 * math.pi / period) + rng.uniform(0, 2 * math.pi)
        out.append(0.5 + 0.4 * np.sin(t) + 0.05 * rng.standard_normal((size, size)))
    return np.clip(np.stack(out), 0, 1).astype(np.float32)


# ---------------------------------------------------------------------- dense SIFT

def test_dense_grid_is_centred_with_the_given_step():
    ys, xs = dense_grid((28, 20), step=4, margin=2)
    np.testing.assert_allclose(ys, 3.5 + 4 * np.arange(6))    # 3.5 .. 23.5, centred on 13.5
    np.testing.assert_allclose(xs, 3.5 + 4 * np.arange(4))    # 3.5 .. 15.5, centred on 9.5
    with pytest.raises(ValueError, match="margin"):
        dense_grid((4, 4), step=1, margin=3)


def test_dense_sift_shapes_and_keypoints(xp):
    ds = DenseSIFT(step=4, sizes=(2.0, 3.0), margin=2)
    kp = ds.keypoints((28, 28))
    assert len(kp) == ds.n_descriptors((28, 28)) == 2 * 6 * 6
    x, y, size = (B.to_host(a) for a in (kp.x, kp.y, kp.size))
    np.testing.assert_allclose(x[:6], 3.5 + 4 * np.arange(6))   # size-major, rows, columns
    np.testing.assert_allclose(y[:6], 3.5)
    np.testing.assert_allclose(y[30:36], 23.5)
    np.testing.assert_allclose(size, np.repeat([2.0, 3.0], 36))
    assert np.all(B.to_host(kp.angle) == 0)
    d = ds.compute(_images(xp, 3))
    assert d.shape == (3, 72, 128) and d.dtype == np.float32
    assert B.backend_of(d).xp is xp


def test_dense_sift_equals_sift_compute_and_is_unit_norm(xp):
    """Same Gaussian images, same trilinear histograms: SIFT.compute at the grid keypoints."""
    ds = DenseSIFT(step=5, sizes=(2.0, 2.7, 3.2, 5.0), margin=1)   # three (octave, layer)s
    images = _images(xp, 2)
    d = B.to_host(ds.compute(images))
    kp = ds.keypoints((28, 28))
    np.testing.assert_allclose(np.linalg.norm(d, axis=2), 1.0, atol=1e-5)
    for n in range(2):
        ref = B.to_host(SIFT().compute(images[n], kp))
        np.testing.assert_allclose(d[n], ref, atol=2e-6)


def test_dense_sift_of_a_flat_image_is_zero_and_uint8_is_scaled(xp):
    ds = DenseSIFT(step=7, sizes=(2.0,))
    assert float(xp.abs(ds.compute(xp.full((1, 28, 28), 0.5, dtype=xp.float32))).max()) == 0
    u8 = (B.to_host(_images(xp, 1)) * 255).round().astype(np.uint8)
    a = B.to_host(ds.compute(xp.asarray(u8)))
    b = B.to_host(ds.compute(xp.asarray(u8.astype(np.float32) / 255)))
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_dense_sift_rejects_bad_input(xp):
    with pytest.raises(ValueError, match="`images` must be 3-D"):
        DenseSIFT().compute(xp.zeros((28, 28), xp.float32))
    with pytest.raises(ValueError, match="`sizes`"):
        DenseSIFT(sizes=(0.0,))
    with pytest.raises(ValueError, match="`step`"):
        DenseSIFT(step=0)


# ---------------------------------------------------------------------- bag of words

def _fitted(xp, assignment="hard", pyramid=(1,), **kw):
    rng = np.random.default_rng(3)
    desc = xp.asarray(rng.random((12, 20, 8)).astype(np.float32))
    xy = xp.asarray((rng.random((20, 2)) * 28).astype(np.float32))
    bow = BagOfWords(6, assignment=assignment, pyramid=pyramid, seed=0, **kw)
    where = dict(xy=xy, image_shape=(28, 28)) if pyramid != (1,) else {}
    return bow.fit(desc, **where), desc, where


@pytest.mark.parametrize("assignment", ["hard", "soft"])
def test_counts_sum_to_the_descriptors_per_pyramid_level(xp, assignment):
    bow, desc, where = _fitted(xp, assignment, pyramid=(1, 2))
    c = B.to_host(bow.counts(desc, **where))
    assert c.shape == (12, bow.n_features) == (12, 6 * 5)
    np.testing.assert_allclose(c[:, :6].sum(axis=1), 20, rtol=1e-5)     # level 1x1
    np.testing.assert_allclose(c[:, 6:].sum(axis=1), 20, rtol=1e-5)     # level 2x2
    if assignment == "hard":
        assert np.array_equal(c, np.round(c))
    else:
        assert (c > 0).sum() > (c[:, :6] > 0).sum()   # soft votes spread over several words


def test_normalisations(xp):
    bow, desc, _ = _fitted(xp, tfidf=False, power=None, norm="l1")
    c = bow.counts(desc)
    np.testing.assert_allclose(B.to_host(bow.weight(c)).sum(axis=1), 1, rtol=1e-6)
    bow.norm = "l2"
    v = B.to_host(bow.weight(c))
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1, rtol=1e-6)
    bow.norm, bow.power = None, 0.5
    np.testing.assert_allclose(B.to_host(bow.weight(c)), np.sqrt(B.to_host(c) / 20), rtol=1e-6)


def test_tfidf_on_a_toy_corpus(xp):
    """Words at 0, 10, 20 on a line; three images as flat descriptors with image indices, and
    a fourth image with no descriptor at all."""
    bow = BagOfWords(3, tfidf=True, power=None, norm=None)
    bow.fit_vocabulary(xp.asarray(np.array([[0.], [10.], [20.]], np.float32)))
    np.testing.assert_array_equal(np.sort(B.to_host(bow.vocabulary_)[:, 0]), [0, 10, 20])
    bow.vocabulary_ = xp.asarray(np.array([[0.], [10.], [20.]], np.float32))
    desc = xp.asarray(np.array([[1.], [-1.], [9.], [11.], [19.], [21.], [0.5], [0.], [2.]],
                               np.float32))
    image = xp.asarray(np.array([0, 0, 0, 1, 1, 1, 2, 2, 2]))
    counts = bow.counts(desc, image_index=image, n_images=4)
    np.testing.assert_array_equal(B.to_host(counts),
                                  [[2, 1, 0], [0, 1, 2], [3, 0, 0], [0, 0, 0]])
    bow.fit_idf(counts)
    # df = (2, 2, 1) over N = 4 images: idf = 1 + ln((1 + N) / (1 + df))
    idf = 1 + np.log(5 / np.array([3, 3, 2]))
    np.testing.assert_allclose(B.to_host(bow.idf_), idf, rtol=1e-6)
    tf = np.array([[2, 1, 0], [0, 1, 2], [3, 0, 0], [0, 0, 0]]) / np.array([[3], [3], [3], [1]])
    np.testing.assert_allclose(B.to_host(bow.weight(counts)), tf * idf, rtol=1e-6)


def test_a_words_own_descriptor_maps_to_that_word(xp):
    for assignment in ("hard", "soft"):
        bow, _, _ = _fitted(xp, assignment)
        V = bow.vocabulary_
        np.testing.assert_array_equal(B.to_host(bow.words(V)), np.arange(6))
        c = B.to_host(bow.counts(V[:, None, :]))    # each word as a one-descriptor image
        assert np.array_equal(c.argmax(axis=1), np.arange(6))
        if assignment == "hard":
            np.testing.assert_array_equal(c, np.eye(6))


def test_save_load_round_trip_is_bit_exact(xp, tmp_path):
    bow, desc, where = _fitted(xp, "soft", pyramid=(1, 2))
    bow.save(tmp_path / "bow.npz")
    back = BagOfWords.load(tmp_path / "bow.npz")
    assert repr(back) == repr(bow) and back.soft_sigma_ == bow.soft_sigma_
    assert B.backend_of(back.vocabulary_).xp is xp
    assert np.array_equal(B.to_host(back.vocabulary_), B.to_host(bow.vocabulary_))
    assert np.array_equal(B.to_host(back.idf_), B.to_host(bow.idf_))
    assert np.array_equal(B.to_host(back.transform(desc, **where)),
                          B.to_host(bow.transform(desc, **where)))


def test_load_rejects_bad_files(tmp_path):
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(ValueError, match="not a zip"):
        BagOfWords.load(tmp_path / "text.npz")
    np.savez(tmp_path / "other.npz", W=np.zeros(3))
    with pytest.raises(ValueError, match="not a saved BagOfWords"):
        BagOfWords.load(tmp_path / "other.npz")
    np.savez(tmp_path / "badcfg.npz", config=np.frombuffer(b"{oops", np.uint8),
             vocabulary=np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="bad config"):
        BagOfWords.load(tmp_path / "badcfg.npz")
    cfg = (b'{"format": "minifeat.BagOfWords/1", "soft_sigma": 1.0, "vocab_size": 2, '
           b'"pyramid": [1], "bogus": 1}')
    np.savez(tmp_path / "badkey.npz", config=np.frombuffer(cfg, np.uint8),
             vocabulary=np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="bad config.*bogus"):
        BagOfWords.load(tmp_path / "badkey.npz")
    bow = BagOfWords(2, tfidf=False, seed=0).fit_vocabulary(np.eye(3, dtype=np.float32))
    bow.save(tmp_path / "ok.npz")
    with np.load(tmp_path / "ok.npz") as f:
        parts = dict(f)
    parts["vocabulary"] = parts["vocabulary"].astype(np.float64)
    np.savez(tmp_path / "wrongdtype.npz", **parts)
    with pytest.raises(ValueError, match="vocabulary must be float32"):
        BagOfWords.load(tmp_path / "wrongdtype.npz")
    with pytest.raises(FileNotFoundError):
        BagOfWords.load(tmp_path / "missing.npz")


def test_bag_of_words_validates_its_arguments(xp):
    with pytest.raises(ValueError, match="`vocab_size`"):
        BagOfWords(0)
    with pytest.raises(ValueError, match="`norm`"):
        BagOfWords(4, norm="max")
    with pytest.raises(RuntimeError, match="no vocabulary"):
        BagOfWords(4).transform(xp.zeros((2, 3, 8), xp.float32))
    bow, desc, _ = _fitted(xp, pyramid=(1, 2))
    with pytest.raises(ValueError, match="needs `xy`"):
        bow.counts(desc)
    with pytest.raises(ValueError, match="8 columns"):
        bow.counts(xp.zeros((2, 3, 5), xp.float32), xy=xp.zeros((3, 2)), image_shape=(9, 9))


def test_end_to_end_separates_two_textures(xp):
    """Horizontal vs vertical stripes of random period and phase: dense SIFT -> BoW (K = 8) ->
    nearest class mean classifies held-out images correctly."""
    rng = np.random.default_rng(7)
    x = np.concatenate([_stripes(rng, False, 20), _stripes(rng, True, 20)])
    y = np.repeat([0, 1], 20)
    ds = DenseSIFT(step=6, sizes=(2.0,))
    bow = BagOfWords(8, pyramid=(1, 2), seed=0)
    where = dict(xy=ds.keypoints((28, 28)).xy, image_shape=(28, 28))
    train = np.r_[0:10, 20:30]
    test = np.r_[10:20, 30:40]
    f_train = B.to_host(bow.fit_transform(ds.compute(xp.asarray(x[train])), **where))
    f_test = B.to_host(bow.transform(ds.compute(xp.asarray(x[test])), **where))
    means = np.stack([f_train[y[train] == k].mean(axis=0) for k in (0, 1)])
    pred = np.argmax(f_test @ means.T, axis=1)
    assert (pred == y[test]).mean() == 1.0


def test_keypoint_sift_feeds_the_flat_path(xp):
    """Detected SIFT (a varying number per image) -> flat descriptors with image indices."""
    from minifeat.dense_sift import keypoint_sift

    yy, xx = np.mgrid[:40, :40]
    blobs = [np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * 3.0 ** 2))
             for cy, cx in ((12, 12), (26, 28))]
    images = xp.asarray(np.stack([blobs[0], blobs[0] + blobs[1], np.zeros((40, 40))])
                        .astype(np.float32))
    desc, index, xy = keypoint_sift(images)
    assert desc.shape[1] == 128 and index.shape == (desc.shape[0],) and xy.shape[1] == 2
    per_image = np.bincount(B.to_host(index), minlength=3)
    assert per_image[0] >= 1 and per_image[1] > per_image[0] and per_image[2] == 0
    bow = BagOfWords(2, tfidf=False, pyramid=(1, 2), seed=0)
    bow.fit_vocabulary(desc)
    c = B.to_host(bow.counts(desc, xy=xy, image_shape=(40, 40), image_index=index,
                             n_images=3))
    np.testing.assert_allclose(c[:, :2].sum(axis=1), per_image)
    np.testing.assert_allclose(c[:, 2:].sum(axis=1), per_image)
