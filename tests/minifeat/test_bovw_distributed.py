"""minifeat.bovw_distributed: the split of the images between ranks, its errors, and a real
``mpiexec -n 2`` run (SIFT on PNG files) that ends with the single process's vocabulary."""
from __future__ import annotations

import pathlib

import numpy as np
import pytest
from PIL import Image, ImageDraw

from minifeat import BagOfWords
from minifeat.bovw_distributed import (
    allgather_rows, fit_vocabulary_sharded, shard_range,
)

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "minidl" / "mpi_scripts" / "bovw_vocabulary.py"


@pytest.mark.parametrize("n,size", [(7, 2), (7, 3), (2, 3), (0, 2), (12, 4)])
def test_shards_are_contiguous_blocks_in_rank_order(n, size):
    blocks = [shard_range(n, r, size) for r in range(size)]
    assert [i for b in blocks for i in b] == list(range(n))
    assert max(map(len, blocks)) - min(map(len, blocks)) <= 1


def test_one_process_errors_name_what_is_wrong(rng):
    bow = BagOfWords(4, seed=0)
    with pytest.raises(ValueError, match=r"holds images 0..2 of 3 and needs one array each, "
                                         r"got 2"):
        fit_vocabulary_sharded(bow, [np.zeros((5, 8))] * 2, 3)
    with pytest.raises(ValueError, match=r"image 1 must give an \(n, D\) array, got \(5,\)"):
        fit_vocabulary_sharded(bow, [np.zeros((5, 8)), np.zeros(5)], 2)
    with pytest.raises(ValueError, match=r"need at least vocab_size=4 descriptors, got 3"):
        fit_vocabulary_sharded(bow, [rng.random((3, 8)), np.zeros((0, 8))], 2)
    with pytest.raises(ValueError, match="no image of the 2 gave any descriptor"):
        fit_vocabulary_sharded(bow, [np.zeros((0, 8))] * 2, 2)
    with pytest.raises(ValueError, match=r"rows must be \(3, F\), got \(2, 1\)"):
        allgather_rows(np.zeros((2, 1)), 3)


def test_one_process_samples_like_fit_vocabulary_and_reaches_a_lloyd_fixed_point(rng):
    from minifeat.kmeans import KMeans
    feats = [rng.standard_normal((n, 6)).astype(np.float32) + 4 * (i % 3)
             for i, n in enumerate((30, 0, 25, 40))]
    bow = fit_vocabulary_sharded(BagOfWords(3, seed=1, max_descriptors=60), feats, 4, tol=0)
    assert bow.vocabulary_.shape == (3, 6) and bow.vocabulary_.dtype == np.float32
    X = np.concatenate(feats)
    X = X[np.sort(np.random.default_rng(1).choice(len(X), 60, replace=False))]
    again = KMeans(3, init=bow.vocabulary_, max_iter=1).fit(X).cluster_centers_
    np.testing.assert_allclose(again, bow.vocabulary_, atol=1e-5)


def _images(folder, n=7):
    rng = np.random.default_rng(0)
    for k in range(n):
        im = Image.new("L", (96, 96), int(rng.integers(0, 80)))
        draw = ImageDraw.Draw(im)
        for _ in range(6):
            (x, y), (w, h) = rng.integers(0, 80, 2), rng.integers(8, 30, 2)
            box = [int(x), int(y), int(x + w), int(y + h)]
            (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(
                box, fill=int(rng.integers(120, 255)))
        im.save(folder / f"img{k}.png")


def test_two_ranks_extract_half_the_images_each_and_fit_the_same_vocabulary(tmp_path,
                                                                            run_python):
    """7 PNG files, SIFT on each rank's block (3 + 4 images), 60 of the ~90 descriptors
    sampled by global index, k-means with allreduced sums: the vocabulary of one process
    (float32 rounding apart: the centroid sums are added in another order)."""
    _images(tmp_path)
    run_python(SCRIPT, tmp_path, tmp_path / "two.npz", ranks=2, cwd=SCRIPT.parent)
    run_python(SCRIPT, tmp_path, tmp_path / "one.npz", cwd=SCRIPT.parent)
    two, one = np.load(tmp_path / "two.npz"), np.load(tmp_path / "one.npz")
    assert int(two["world"]) == 2 and int(one["world"]) == 1
    assert list(two["ranks"]) == [0, 0, 0, 1, 1, 1, 1] and not one["ranks"].any()
    np.testing.assert_array_equal(two["counts"], one["counts"])
    assert one["counts"].sum() > 60            # so the sampling is exercised
    np.testing.assert_allclose(two["vocabulary"], one["vocabulary"], rtol=0, atol=1e-6)
    assert float(two["sigma"]) == pytest.approx(float(one["sigma"]), rel=1e-6)
