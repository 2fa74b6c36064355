"""minifeat.retrieval: the inverted index scores equal the dense tf-idf cosine, it saves and
loads without pickle, spatial verification, and retrieval of warped copies of real photos."""
import zipfile

import numpy as np
import pytest

from minifeat.retrieval import InvertedIndex, average_precision, recall_at_k


def _dense_scores(docs, query, K):
    """The textbook computation: dense tf-idf vectors, unit length, cosine."""
    N = len(docs)
    tf = np.stack([np.bincount(d, minlength=K) / len(d) for d in docs])
    df = (tf > 0).sum(axis=0)
    idf = np.log(N / np.maximum(df, 1))
    V = tf * idf
    V /= np.maximum(np.linalg.norm(V, axis=1, keepdims=True), 1e-300)
    q = np.bincount(query, minlength=K) / len(query) * idf
    q /= np.linalg.norm(q)
    return V @ q


def _random_index(rng, N=40, K=50):
    vocab = rng.standard_normal((K, 8)).astype(np.float32)
    index = InvertedIndex(vocab)
    docs = []
    for d in range(N):
        # skewed word frequencies: some words common, many rare
        w = np.minimum(rng.zipf(1.4, size=rng.integers(5, 60)) - 1, K - 1)
        docs.append(w)
        index.add_words(w, rng.random((len(w), 2)) * 100, name=f"img{d}.jpg")
    return index, docs


def test_scores_equal_dense_tfidf_cosine(rng):
    index, docs = _random_index(rng)
    for _ in range(5):
        query = np.minimum(rng.zipf(1.4, size=30) - 1, 49)
        np.testing.assert_allclose(index.scores_for_words(query),
                                   _dense_scores(docs, query, 50), rtol=1e-12, atol=1e-15)
    # a query equal to an image scores 1 with itself
    assert index.scores_for_words(docs[7])[7] == pytest.approx(1.0)


def test_words_assigns_the_nearest_vocabulary_entry(rng):
    vocab = rng.standard_normal((6, 4)).astype(np.float32)
    index = InvertedIndex(vocab)
    desc = vocab[[3, 0, 5, 3]] + 0.01 * rng.standard_normal((4, 4)).astype(np.float32)
    np.testing.assert_array_equal(index.words(desc), [3, 0, 5, 3])
    with pytest.raises(ValueError, match=r"descriptors must be \(M, 4\)"):
        index.words(desc[:, :3])


def test_query_ranks_and_excludes(rng):
    index, docs = _random_index(rng)
    top = index.query_words(docs[3], top_k=5)
    assert top[0][0] == 3 and len(top) == 5
    assert [s for _, s, _ in top] == sorted((s for _, s, _ in top), reverse=True)
    assert all(d != 3 for d, _, _ in index.query_words(docs[3], exclude=[3]))


def test_save_load_round_trip_without_pickle(rng, tmp_path):
    index, docs = _random_index(rng)
    path = tmp_path / "index.npz"
    index.save(path)
    with zipfile.ZipFile(path) as z, z.open("words.npy") as f:
        np.lib.format.read_array(f, allow_pickle=False)    # plain arrays, no objects
    again = InvertedIndex.load(path)
    assert again.names == index.names and len(again) == 40
    np.testing.assert_array_equal(again.vocabulary, index.vocabulary)
    query = docs[11][:10]
    np.testing.assert_array_equal(again.scores_for_words(query), index.scores_for_words(query))
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable .npz"):
        InvertedIndex.load(tmp_path / "bad.npz")


def test_bad_words_are_refused(rng):
    index, _ = _random_index(rng)
    with pytest.raises(ValueError, match=r"ints in \[0, 50\)"):
        index.add_words(np.array([1, 50]))
    with pytest.raises(ValueError, match=r"xy must be \(2, 2\)"):
        index.add_words(np.array([1, 2]), np.zeros((3, 2)))


def test_spatial_verification_counts_geometric_agreement(rng):
    """Image 0 is the query moved by a translation (all matches agree), image 1 has the same
    words at random places: same tf-idf score, but only image 0 has inliers."""
    K, n = 200, 80
    index = InvertedIndex(rng.standard_normal((K, 4)).astype(np.float32))
    words = rng.permutation(K)[:n]
    xy = rng.random((n, 2)) * 200
    index.add_words(words, xy + [15.0, -7.0])
    index.add_words(words, rng.random((n, 2)) * 200)
    index.add_words(rng.permutation(K)[:n], xy)
    plain = index.query_words(words, top_k=3)
    assert plain[0][1] == pytest.approx(plain[1][1])
    ranked = index.query_words(words, xy, top_k=3, verify=3)
    assert ranked[0][0] == 0 and ranked[0][2] == n
    assert ranked[1][2] == 0


def test_average_precision_and_recall():
    assert average_precision([1, 0, 1, 0]) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision([0, 0]) == 0.0
    assert recall_at_k([1, 0, 0, 1, 1], 3) == pytest.approx(1 / 3)
    assert recall_at_k([1, 0], 2, total=4) == 0.25


@pytest.mark.data
def test_warped_copies_of_real_photos_are_retrieved(images_dir):
    """Each photo under random homographies, crops and lighting changes, mixed with the
    others: the query's own warps rank on top (the numbers are in the benchmark)."""
    from benchmarks.bench_retrieval import evaluate, warped_set
    images, labels = warped_set(images_dir, n_warps=2, max_size=160, seed=0, limit=8)
    result = evaluate(images, labels, vocab_size=200, verify=5)
    assert result["plain"]["mAP"] > 0.6
    assert result["verified"]["recall@5"] >= result["plain"]["recall@5"] - 0.05
