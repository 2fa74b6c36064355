"""Image search with visual words: an inverted index with tf-idf scoring (Sivic & Zisserman
2003, "Video Google"), and spatial verification by RANSAC (Philbin et al. 2007).

Each image is a bag of visual words (the nearest vocabulary entry of each SIFT descriptor).
Image ``d`` is the vector ``v_d[w] = tf_dw * idf_w`` with ``tf_dw = n_dw / n_d`` (the share of
its features that are word ``w``) and ``idf_w = log(N / N_w)`` (``N`` images, ``N_w`` of them
containing ``w``: a word found everywhere tells nothing), scaled to unit length.  A query is
scored against every image by the cosine ``v_q . v_d``.

Most images contain few of the K words, so the index stores, per word, the list of images
containing it and their weights (the *posting list*, a sparse column: CSR arrays ``indptr``,
``postings``, ``weights``); a query touches only the lists of its own words instead of all N
vectors.  The result equals the dense cosine exactly.

Spatial verification: the top candidates' features that share a word with the query's form
tentative matches; a homography fitted by RANSAC (:func:`~minifeat.matching.ransac_homography`)
counts those that agree with one geometric transformation.  A true match of a photo of the same
scene has many such inliers, a chance one of similar texture few.  Candidates are re-ranked by
inliers (the tf-idf score breaks ties).

The index lives on the host (NumPy): posting lists are sparse, irregular and small; the
vocabulary assignment of the descriptors runs on their backend.  :meth:`InvertedIndex.save`
writes an ``.npz`` of plain arrays (image names as UTF-8 bytes), read back without pickle.
"""
from __future__ import annotations

import json

import numpy

from minidl import backend as B
from minidl.serialization import load_state, save_state

from .kmeans import squared_distances

__all__ = ["InvertedIndex", "average_precision", "recall_at_k"]

_FORMAT = "minifeat.InvertedIndex/1"


class InvertedIndex:
    """An inverted file over visual words, with tf-idf cosine scoring.

    Parameters
    ----------
    vocabulary : (K, D) float array (any backend), the visual words; descriptors given to
        :meth:`add` and :meth:`query` are assigned to their nearest word.

    Use: :meth:`add` every image (its descriptors and keypoint positions), then :meth:`query`;
    the idf and the image norms are (re)computed at the first query after an add.

    Attributes
    ----------
    names : list of str, the images in the order added (their ids).
    """

    def __init__(self, vocabulary):
        if getattr(vocabulary, "ndim", None) != 2 or vocabulary.shape[0] < 1:
            raise ValueError(f"vocabulary must be a (K, D) array, got "
                             f"{getattr(vocabulary, 'shape', type(vocabulary).__name__)}")
        self.vocabulary = vocabulary
        self.names: list[str] = []
        self._words: list[numpy.ndarray] = []   # per image: word of each feature
        self._xy: list[numpy.ndarray] = []      # per image: (n, 2) feature positions
        self._built = None

    @property
    def vocab_size(self) -> int:
        return int(self.vocabulary.shape[0])

    def __len__(self):
        return len(self.names)

    def __repr__(self):
        return f"InvertedIndex({len(self)} images, {self.vocab_size} words)"

    # ------------------------------------------------------------------ building
    def words(self, descriptors) -> numpy.ndarray:
        """The nearest word of each descriptor (M, D), on the host (M,) int64."""
        if getattr(descriptors, "ndim", None) != 2 or \
                descriptors.shape[1] != self.vocabulary.shape[1]:
            raise ValueError(f"descriptors must be (M, {self.vocabulary.shape[1]}), got "
                             f"{getattr(descriptors, 'shape', type(descriptors).__name__)}")
        if descriptors.shape[0] == 0:
            return numpy.zeros(0, numpy.int64)
        xp = B.get_array_module(descriptors)
        V = self.vocabulary if B.get_array_module(self.vocabulary) is xp else \
            B._backend_for_xp(xp).asarray(B.to_host(self.vocabulary))
        d = squared_distances(descriptors.astype(xp.float32), V.astype(xp.float32))
        return numpy.asarray(B.to_host(xp.argmin(d, axis=1)), numpy.int64)

    def add(self, descriptors, xy=None, name: str | None = None) -> int:
        """Index one image from its descriptors (M, D) and feature positions ``xy`` (M, 2)
        (x, y; needed only for spatial verification).  Returns its id."""
        return self.add_words(self.words(descriptors), xy, name)

    def add_words(self, words, xy=None, name: str | None = None) -> int:
        """Index one image given as word ids (M,) ints in [0, K)."""
        w = self._check_words(words, "words")
        xy = numpy.zeros((len(w), 2), numpy.float32) if xy is None else \
            numpy.asarray(B.to_host(xy), numpy.float32)
        if xy.shape != (len(w), 2):
            raise ValueError(f"xy must be ({len(w)}, 2) like the words, got {xy.shape}")
        self.names.append(str(len(self.names)) if name is None else str(name))
        self._words.append(w)
        self._xy.append(xy)
        self._built = None
        return len(self.names) - 1

    def _check_words(self, words, what) -> numpy.ndarray:
        w = numpy.asarray(B.to_host(words))
        if w.ndim != 1 or (w.size and (w.dtype.kind not in "iu" or w.min() < 0
                                       or w.max() >= self.vocab_size)):
            raise ValueError(f"{what} must be a 1-D array of ints in [0, {self.vocab_size}), "
                             f"got {w.dtype} {w.shape}")
        return w.astype(numpy.int64)

    def _build(self):
        """CSR posting lists over words, idf, and each image's unit-norm tf-idf weights."""
        N, K = len(self.names), self.vocab_size
        counts = [numpy.bincount(w, minlength=K) for w in self._words]
        rows, cols, vals = [], [], []
        for d, c in enumerate(counts):
            nz = numpy.flatnonzero(c)
            rows.append(numpy.full(len(nz), d, numpy.int64))
            cols.append(nz)
            vals.append(c[nz] / max(1, c.sum()))                      # tf
        doc = numpy.concatenate(rows) if rows else numpy.zeros(0, numpy.int64)
        word = numpy.concatenate(cols) if cols else numpy.zeros(0, numpy.int64)
        tf = numpy.concatenate(vals) if vals else numpy.zeros(0)
        df = numpy.bincount(word, minlength=K)
        idf = numpy.log(N / numpy.maximum(df, 1)) if N else numpy.zeros(K)
        weight = tf * idf[word]
        norm = numpy.sqrt(numpy.bincount(doc, weights=weight * weight, minlength=N))
        weight = weight / numpy.where(norm > 0, norm, 1.0)[doc]
        order = numpy.argsort(word, kind="stable")                   # group by word
        indptr = numpy.concatenate([[0], numpy.cumsum(df)])
        self._built = dict(indptr=indptr, postings=doc[order], weights=weight[order], idf=idf)

    # ------------------------------------------------------------------ searching
    def query_vector(self, words) -> tuple[numpy.ndarray, numpy.ndarray]:
        """The query's unit tf-idf vector as (unique words, weights)."""
        if self._built is None:
            self._build()
        w = self._check_words(words, "query words")
        uniq, n = numpy.unique(w, return_counts=True)
        q = n / max(1, len(w)) * self._built["idf"][uniq]
        norm = numpy.sqrt((q * q).sum())
        return uniq, (q / norm if norm > 0 else q)

    def scores_for_words(self, words) -> numpy.ndarray:
        """Cosine tf-idf score (N,) float64 of every indexed image for a query's words."""
        uniq, q = self.query_vector(words)
        b = self._built
        start, stop = b["indptr"][uniq], b["indptr"][uniq + 1]
        lengths = stop - start
        # the posting lists of the query's words, concatenated without a Python loop
        pos = numpy.repeat(start - numpy.cumsum(lengths) + lengths, lengths) + \
            numpy.arange(lengths.sum())
        return numpy.bincount(b["postings"][pos], weights=b["weights"][pos] *
                              numpy.repeat(q, lengths),
                              minlength=len(self.names)).astype(numpy.float64)

    def query(self, descriptors, xy=None, top_k: int = 10, verify: int = 0,
              threshold: float = 8.0, min_inliers: int = 12, exclude=()):
        """The ``top_k`` best images for a query image: a list of
        ``(id, score, inliers)`` best first (``inliers`` None without verification).

        ``verify``: re-rank the best ``verify`` candidates by RANSAC inliers among the
        features sharing a word with the query (``xy`` (M, 2) needed; ``threshold`` in pixels,
        fewer than ``min_inliers`` counts as 0).  ``exclude``: ids never returned (the query's
        own entry when it was indexed)."""
        return self.query_words(self.words(descriptors), xy, top_k, verify, threshold,
                                min_inliers, exclude)

    def query_words(self, words, xy=None, top_k: int = 10, verify: int = 0,
                    threshold: float = 8.0, min_inliers: int = 12, exclude=()):
        """:meth:`query` for a query given as word ids (M,)."""
        words = self._check_words(words, "query words")
        scores = self.scores_for_words(words)
        if len(exclude):
            scores[numpy.asarray(list(exclude), numpy.int64)] = -numpy.inf
        order = numpy.argsort(-scores, kind="stable")
        order = order[numpy.isfinite(scores[order])]
        if not verify:
            return [(int(d), float(scores[d]), None) for d in order[:top_k]]
        if xy is None:
            raise ValueError("verify needs the query's feature positions `xy` (M, 2)")
        xy = numpy.asarray(B.to_host(xy), numpy.float64)
        head = order[:verify]
        inl = {int(d): self.inliers(words, xy, int(d), threshold, min_inliers) for d in head}
        head = sorted(head, key=lambda d: (-inl[int(d)], -scores[d]))
        ranked = [(int(d), float(scores[d]), inl[int(d)]) for d in head]
        ranked += [(int(d), float(scores[d]), None) for d in order[verify:]]
        return ranked[:top_k]

    def correspondences(self, words, xy, image: int, max_per_word: int = 3):
        """Tentative matches between a query (words (M,), xy (M, 2)) and indexed ``image``:
        (query points (P, 2), image points (P, 2)), every pair of features with the same word,
        skipping words that occur more than ``max_per_word`` times on either side (repeated
        texture would add many pairs and few true ones)."""
        w2, p2 = self._words[image], self._xy[image]
        src, dst = [], []
        common = numpy.intersect1d(words, w2)
        for w in common:
            a, b = numpy.flatnonzero(words == w), numpy.flatnonzero(w2 == w)
            if len(a) > max_per_word or len(b) > max_per_word:
                continue
            ia, ib = numpy.meshgrid(a, b, indexing="ij")
            src.append(xy[ia.ravel()])
            dst.append(p2[ib.ravel()])
        if not src:
            return numpy.zeros((0, 2)), numpy.zeros((0, 2))
        return numpy.concatenate(src).astype(numpy.float64), \
            numpy.concatenate(dst).astype(numpy.float64)

    def spatial_matches(self, words, xy, image: int, threshold: float = 8.0,
                        min_inliers: int = 12):
        """``(src, dst, inliers, H)``: :meth:`correspondences` with indexed ``image``, the
        RANSAC inlier mask (P,) and the homography (3, 3) mapping query points onto the
        image's, or None when fewer than ``min_inliers`` agree (a degenerate fit's inf
        coordinates are no warning: they are simply no inliers)."""
        from .matching import ransac_homography
        src, dst = self.correspondences(words, xy, image)
        if len(src) < max(4, min_inliers):
            return src, dst, numpy.zeros(len(src), bool), None
        with numpy.errstate(divide="ignore", invalid="ignore"):
            H, mask = ransac_homography(src, dst, threshold=threshold, max_trials=500,
                                        min_inliers=min_inliers)
        return src, dst, numpy.asarray(mask, bool), H

    def inliers(self, words, xy, image: int, threshold: float = 8.0,
                min_inliers: int = 12) -> int:
        """The number of RANSAC inliers among :meth:`correspondences` (0 when fewer than
        ``min_inliers``)."""
        _, _, mask, H = self.spatial_matches(words, xy, image, threshold, min_inliers)
        return 0 if H is None else int(mask.sum())

    # ------------------------------------------------------------------ save / load
    def save(self, path) -> None:
        """Write the vocabulary, every image's words and positions and the names to an
        ``.npz`` file of plain arrays (no pickle)."""
        lengths = numpy.asarray([len(w) for w in self._words], numpy.int64)
        names = json.dumps({"format": _FORMAT, "names": self.names}).encode()
        save_state(path, {
            "config": numpy.frombuffer(names, numpy.uint8),
            "vocabulary": B.to_host(self.vocabulary),
            "lengths": lengths,
            "words": numpy.concatenate(self._words) if self._words else
            numpy.zeros(0, numpy.int64),
            "xy": numpy.concatenate(self._xy) if self._xy else numpy.zeros((0, 2), numpy.float32),
        })

    @classmethod
    def load(cls, path) -> "InvertedIndex":
        """An index from :meth:`save`'s file (``ValueError`` for other files)."""
        state = load_state(path)
        need = {"config", "vocabulary", "lengths", "words", "xy"}
        if not need <= set(state):
            raise ValueError(f"{str(path)!r} is not a saved InvertedIndex (keys {sorted(state)};"
                             f" expected {sorted(need)})")
        try:
            config = json.loads(state["config"].astype(numpy.uint8).tobytes().decode())
            if config.get("format") != _FORMAT:
                raise ValueError(f"format {config.get('format')!r}")
            names = [str(n) for n in config["names"]]
        except (ValueError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"{str(path)!r} is not a saved InvertedIndex ({_FORMAT}): bad "
                             f"config ({exc})") from exc
        lengths, words, xy = state["lengths"], state["words"], state["xy"]
        if len(lengths) != len(names) or lengths.sum() != len(words) or \
                xy.shape != (len(words), 2):
            raise ValueError(f"{str(path)!r}: inconsistent arrays ({len(names)} names, "
                             f"lengths {lengths.shape}, words {words.shape}, xy {xy.shape})")
        index = cls(B.get_backend().asarray(state["vocabulary"]))
        cuts = numpy.cumsum(lengths)[:-1]
        for name, w, p in zip(names, numpy.split(words, cuts), numpy.split(xy, cuts)):
            index.add_words(w, p, name)
        return index


def average_precision(relevant) -> float:
    """Average precision of one ranking: ``relevant`` (n,) bools, best first, covering every
    relevant item (the mean over the relevant ranks r of precision@r); 0 when none is
    relevant."""
    rel = numpy.asarray(relevant, bool)
    if not rel.any():
        return 0.0
    hits = numpy.cumsum(rel)
    return float((hits[rel] / (numpy.flatnonzero(rel) + 1)).mean())


def recall_at_k(relevant, k: int, total: int | None = None) -> float:
    """Share of the ``total`` relevant items (default: all in ``relevant``) among the first
    ``k`` of the ranking."""
    rel = numpy.asarray(relevant, bool)
    total = int(rel.sum()) if total is None else int(total)
    return float(rel[:k].sum()) / total if total else 0.0
