"""Bags of visual words (Sivic & Zisserman 2003; Csurka et al. 2004), with spatial pyramids
(Lazebnik, Schmid & Ponce 2006), written once over ``xp``.

Pipeline::

    descriptors --k-means--> vocabulary (K, D)
    descriptors --nearest word(s)--> counts per (pyramid cell, word) --> tf-idf --> power --> norm

* **Vocabulary**: k-means (:class:`~minifeat.KMeans`) over at most ``max_descriptors``
  descriptors drawn at random, seeded by k-means++ on ``init_sample`` of them (k-means++ makes
  K passes over its input: on 60k x 128 descriptors and K = 512 it costs 40 Lloyd iterations);
  mini-batch k-means (Sculley 2010) when more than ``minibatch_above`` are used.
* **Assignment**: ``"hard"`` (each descriptor votes 1 for its nearest word) or ``"soft"``
  (kernel codebook, van Gemert et al. 2008, restricted to the ``soft_neighbors`` nearest words:
  weights ``exp(-d^2 / (2 s^2))`` normalised to sum 1, so a histogram still sums to the number
  of descriptors; ``s`` defaults to the RMS distance of the training descriptors to their
  nearest word).
* **Spatial pyramid** ``pyramid=(1, 2)``: level ``g`` splits the image into ``g x g`` cells; a
  descriptor at ``(x, y)`` falls in cell ``(floor(g y / H), floor(g x / W))`` of every level.
  Feature layout: levels in order, cells row-major, ``K`` words each; dimension
  ``F = K * sum(g^2)``.
* **tf-idf** (Sivic & Zisserman 2003, sec. 4.1, smoothed): ``tf = count / n_descriptors`` of the
  image, ``idf_f = 1 + log((1 + N) / (1 + df_f))`` with ``df_f`` the number of the ``N``
  training images whose feature ``f`` is non-zero (scikit-learn's smoothed idf: a feature
  present in every image keeps weight 1 instead of vanishing, which matters for dense
  sampling, where the commonest words are everywhere).
* **power** normalisation (Perronnin et al. 2010): ``sign(v) |v|^power`` (0.5 = signed sqrt).
* **norm**: ``"l2"``, ``"l1"`` or None, applied last.

Example
-------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> desc = rng.random((20, 30, 8)).astype(np.float32)       # 20 images, 30 descriptors each
>>> bow = BagOfWords(4, seed=0).fit(desc)
>>> bow.transform(desc).shape
(20, 4)
"""
from __future__ import annotations

import json
import math

import numpy

from minidl import backend as B
from minidl.serialization import load_state, save_state

from .kmeans import KMeans, _is_int, squared_distances

__all__ = ["BagOfWords"]

_FORMAT = "minifeat.BagOfWords/1"
_CONFIG = ("vocab_size", "assignment", "soft_neighbors", "tfidf", "power", "norm", "pyramid")


class BagOfWords:
    """Visual bag-of-words encoder.

    Parameters
    ----------
    vocab_size : int >= 1, the number of visual words K.
    assignment : "hard" or "soft".
    soft_neighbors : int >= 1, words sharing each descriptor in soft assignment.
    soft_sigma : float > 0 or None (estimated in :meth:`fit_vocabulary`).
    tfidf : bool, weight by tf-idf (idf learnt by :meth:`fit_idf`/:meth:`fit`); when False the
        histogram is divided by the number of descriptors (term frequency only).
    power : float in (0, 1] or None, exponent of the signed power normalisation.
    norm : "l2", "l1" or None.
    pyramid : tuple of int >= 1, grid sizes of the spatial pyramid levels; (1,) = no pyramid.
    max_descriptors : int, descriptors sampled to fit the vocabulary.
    init_sample : int, k-means++ seeds the centres on this many of them (then Lloyd or
        mini-batch iterations use all ``max_descriptors``).
    minibatch_above : int, use mini-batch k-means (batch 4096) above this many descriptors.
    max_iter : int, Lloyd iterations (or mini-batch epochs).
    seed : int or None, seeds the sampling and k-means.
    chunk_size : int, descriptors per distance block (memory ``chunk_size * K``).

    Attributes
    ----------
    vocabulary_ : (K, D) float32 array, the visual words (after fitting or :meth:`load`).
    idf_ : (F,) float32 array or None.
    soft_sigma_ : float.
    """

    def __init__(self, vocab_size: int = 256, *, assignment: str = "hard",
                 soft_neighbors: int = 3, soft_sigma: float | None = None, tfidf: bool = True,
                 power: float | None = 0.5, norm: str | None = "l2", pyramid=(1,),
                 max_descriptors: int = 100_000, init_sample: int = 10_000,
                 minibatch_above: int = 200_000,
                 max_iter: int = 20, seed: int | None = 0, chunk_size: int = 8192):
        if not _is_int(vocab_size) or vocab_size < 1:
            raise ValueError(f"`vocab_size` must be an int >= 1, got {vocab_size!r}")
        if assignment not in ("hard", "soft"):
            raise ValueError(f"`assignment` must be 'hard' or 'soft', got {assignment!r}")
        for name, v in (("soft_neighbors", soft_neighbors), ("max_descriptors", max_descriptors),
                        ("init_sample", init_sample),
                        ("minibatch_above", minibatch_above), ("max_iter", max_iter),
                        ("chunk_size", chunk_size)):
            if not _is_int(v) or v < 1:
                raise ValueError(f"`{name}` must be an int >= 1, got {v!r}")
        if soft_sigma is not None and not soft_sigma > 0:
            raise ValueError(f"`soft_sigma` must be positive or None, got {soft_sigma!r}")
        if power is not None and not 0 < power <= 1:
            raise ValueError(f"`power` must be in (0, 1] or None, got {power!r}")
        if norm not in ("l2", "l1", None):
            raise ValueError(f"`norm` must be 'l2', 'l1' or None, got {norm!r}")
        pyramid = tuple(pyramid)
        if not pyramid or not all(_is_int(g) and g >= 1 for g in pyramid):
            raise ValueError(f"`pyramid` must be a non-empty tuple of ints >= 1, got {pyramid!r}")
        self.vocab_size, self.assignment = int(vocab_size), assignment
        self.soft_neighbors = min(int(soft_neighbors), int(vocab_size))
        self.tfidf = bool(tfidf)
        self.power = None if power is None else float(power)
        self.norm, self.pyramid = norm, tuple(int(g) for g in pyramid)
        self.max_descriptors, self.minibatch_above = int(max_descriptors), int(minibatch_above)
        self.init_sample = max(int(init_sample), int(vocab_size))
        self.max_iter, self.seed, self.chunk_size = int(max_iter), seed, int(chunk_size)
        self.soft_sigma = None if soft_sigma is None else float(soft_sigma)
        self.soft_sigma_ = self.soft_sigma
        self.idf_ = None

    def __repr__(self):
        return (f"BagOfWords(vocab_size={self.vocab_size}, assignment={self.assignment!r}, "
                f"tfidf={self.tfidf}, power={self.power}, norm={self.norm!r}, "
                f"pyramid={self.pyramid})")

    @property
    def n_features(self) -> int:
        """F = K * sum(g^2 for g in pyramid)."""
        return self.vocab_size * sum(g * g for g in self.pyramid)

    # ------------------------------------------------------------------ validation
    def _check_desc(self, descriptors, xy, image_index, n_images, image_shape):
        """-> (flat (M, D), image index (M,) or None, n_images, cell index (M, levels) or None)."""
        if not B.is_array(descriptors):
            raise TypeError(f"`descriptors` must be an array (N, P, D) or (M, D), "
                            f"got {type(descriptors).__name__}")
        xp = B.get_array_module(descriptors)
        if descriptors.ndim == 3:
            if image_index is not None:
                raise ValueError("`image_index` is only for flat (M, D) descriptors; "
                                 f"got descriptors of shape {tuple(descriptors.shape)}")
            N, P, Dd = descriptors.shape
            flat = descriptors.reshape(N * P, Dd)
            idx = xp.repeat(xp.arange(N), P)
        elif descriptors.ndim == 2:
            flat, N = descriptors, n_images
            if image_index is None:
                raise ValueError("flat (M, D) descriptors need `image_index` (M,) telling which "
                                 "image each row comes from (or pass (N, P, D))")
            if tuple(image_index.shape) != (flat.shape[0],):
                raise ValueError(f"`image_index` must have shape ({flat.shape[0]},), "
                                 f"got {tuple(image_index.shape)}")
            idx = image_index.astype(xp.int64)
            if N is None:
                N = int(idx.max()) + 1 if flat.shape[0] else 0
        else:
            raise ValueError(f"`descriptors` must be 3-D (N, P, D) or 2-D (M, D), "
                             f"got shape {tuple(descriptors.shape)}")
        if hasattr(self, "vocabulary_") and flat.shape[1] != self.vocabulary_.shape[1]:
            raise ValueError(f"descriptors must have {self.vocabulary_.shape[1]} columns like "
                             f"the vocabulary, got {flat.shape[1]}")
        cells = None
        if self.pyramid != (1,):
            if xy is None or image_shape is None:
                raise ValueError(f"pyramid={self.pyramid} needs `xy` (positions, (P, 2) or "
                                 "(M, 2), x then y) and `image_shape` (H, W)")
            if descriptors.ndim == 3 and tuple(xy.shape) == (descriptors.shape[1], 2):
                xy = xp.tile(xy, (descriptors.shape[0], 1))
            if tuple(xy.shape) != (flat.shape[0], 2):
                raise ValueError(f"`xy` must have shape (P, 2) or ({flat.shape[0]}, 2), "
                                 f"got {tuple(xy.shape)}")
            cells = self._cells(xy, image_shape, xp)
        return flat.astype(xp.float32), idx, int(N), cells

    def _cells(self, xy, image_shape, xp):
        """(M, n_levels) feature-block index of each descriptor: level offset + cell."""
        H, W = image_shape
        cols, offset = [], 0
        for g in self.pyramid:
            cy = xp.clip(xp.floor(xy[:, 1].astype(xp.float64) * g / H), 0, g - 1)
            cx = xp.clip(xp.floor(xy[:, 0].astype(xp.float64) * g / W), 0, g - 1)
            cols.append((offset + cy * g + cx).astype(xp.int64))
            offset += g * g
        return xp.stack(cols, axis=1)

    def _check_fitted(self):
        if not hasattr(self, "vocabulary_"):
            raise RuntimeError("this BagOfWords has no vocabulary yet: call fit(...), "
                               "fit_vocabulary(...) or BagOfWords.load(path)")

    # ------------------------------------------------------------------ vocabulary
    def fit_vocabulary(self, descriptors):
        """Learn the K words from descriptors (N, P, D) or (M, D); returns ``self``."""
        if not B.is_array(descriptors) or descriptors.ndim not in (2, 3):
            raise ValueError("`descriptors` must be an array of shape (N, P, D) or (M, D), got "
                             f"{getattr(descriptors, 'shape', type(descriptors).__name__)}")
        xp = B.get_array_module(descriptors)
        X = descriptors.reshape(-1, descriptors.shape[-1]).astype(xp.float32)
        M = int(X.shape[0])
        if M < self.vocab_size:
            raise ValueError(f"need at least vocab_size={self.vocab_size} descriptors, got {M}")
        rng = numpy.random.default_rng(self.seed)
        if M > self.max_descriptors:
            X = X[xp.asarray(numpy.sort(rng.choice(M, self.max_descriptors, replace=False)))]
        init = "k-means++"
        if X.shape[0] > self.init_sample:
            # k-means++ costs K narrow passes over the data: seed on a subsample, then refine
            sub = X[xp.asarray(numpy.sort(rng.choice(X.shape[0], self.init_sample,
                                                     replace=False)))]
            init = KMeans(self.vocab_size, max_iter=1, seed=self.seed,
                          chunk_size=self.chunk_size).fit(sub).cluster_centers_
        batch = 4096 if X.shape[0] > self.minibatch_above else None
        km = KMeans(self.vocab_size, init=init, max_iter=self.max_iter, seed=self.seed,
                    batch_size=batch, chunk_size=self.chunk_size).fit(X)
        self.vocabulary_ = km.cluster_centers_.astype(xp.float32)
        self.soft_sigma_ = self.soft_sigma if self.soft_sigma is not None \
            else max(math.sqrt(km.inertia_ / X.shape[0]), 1e-6)
        self.idf_ = None
        return self

    def words(self, descriptors):
        """Index of the nearest word of each row of (M, D) -> (M,) int64."""
        self._check_fitted()
        xp = B.get_array_module(descriptors)
        X = descriptors.reshape(-1, descriptors.shape[-1]).astype(xp.float32)
        V = _on(xp, self.vocabulary_)
        out = [xp.argmin(squared_distances(X[s:s + self.chunk_size], V), axis=1)
               for s in range(0, X.shape[0], self.chunk_size)]
        return xp.concatenate(out) if out else xp.zeros(0, xp.int64)

    def _votes(self, X, xp):
        """(M, k) word indices and (M, k) weights of each descriptor's votes."""
        V = _on(xp, self.vocabulary_)
        if self.assignment == "hard":
            w = self.words(X)[:, None]
            return w, xp.ones(w.shape, xp.float32)
        k = self.soft_neighbors
        words, weights = [], []
        for s in range(0, X.shape[0], self.chunk_size):
            d = squared_distances(X[s:s + self.chunk_size], V)
            nn = xp.argpartition(d, k - 1, axis=1)[:, :k] if k < V.shape[0] \
                else xp.argsort(d, axis=1)
            dk = xp.take_along_axis(d, nn, axis=1)
            # subtract the nearest distance first: exp() cannot underflow to 0/0
            e = xp.exp(-(dk - dk.min(axis=1, keepdims=True)) / (2.0 * self.soft_sigma_ ** 2))
            words.append(nn)
            weights.append((e / e.sum(axis=1, keepdims=True)).astype(xp.float32))
        if not words:
            return xp.zeros((0, k), xp.int64), xp.zeros((0, k), xp.float32)
        return xp.concatenate(words), xp.concatenate(weights)

    # ------------------------------------------------------------------ encoding
    def counts(self, descriptors, *, xy=None, image_shape=None, image_index=None,
               n_images=None):
        """Raw (soft) word counts per image and pyramid cell, float32 (N, F).

        ``descriptors``: (N, P, D), or (M, D) with ``image_index`` (M,) (and ``n_images``
        for trailing images without descriptors).  ``xy`` ((P, 2) or (M, 2), pixel x then y)
        and ``image_shape`` (H, W) are required when a pyramid is used.
        """
        self._check_fitted()
        X, idx, N, cells = self._check_desc(descriptors, xy, image_index, n_images,
                                            image_shape)
        xp = B.get_array_module(X)
        K, C = self.vocab_size, sum(g * g for g in self.pyramid)
        words, weights = self._votes(X, xp)
        if cells is None:
            cells = xp.zeros((X.shape[0], 1), xp.int64)
        # one vote per (descriptor, neighbour word, pyramid level): flat (image, cell, word) bins
        base = idx[:, None, None] * (C * K) + cells[:, None, :] * K
        flat = (base + words[:, :, None]).reshape(-1)
        w = xp.broadcast_to(weights[:, :, None], (X.shape[0],) + words.shape[1:]
                            + (cells.shape[1],)).reshape(-1)
        h = xp.bincount(flat, weights=w.astype(xp.float64), minlength=N * C * K)
        return h.reshape(N, C * K).astype(xp.float32)

    def fit_idf(self, counts):
        """Learn the idf weights from training counts (N, F); returns ``self``."""
        xp = B.get_array_module(counts)
        if counts.ndim != 2 or counts.shape[1] != self.n_features:
            raise ValueError(f"`counts` must have shape (N, {self.n_features}), "
                             f"got {tuple(counts.shape)}")
        N = counts.shape[0]
        df = (counts > 0).sum(axis=0).astype(xp.float64)
        self.idf_ = (1.0 + xp.log((1.0 + N) / (1.0 + df))).astype(xp.float32)
        return self

    def weight(self, counts):
        """tf(-idf), power and norm of raw counts (N, F) -> float32 (N, F)."""
        xp = B.get_array_module(counts)
        if counts.ndim != 2 or counts.shape[1] != self.n_features:
            raise ValueError(f"`counts` must have shape (N, {self.n_features}), "
                             f"got {tuple(counts.shape)}")
        v = counts.astype(xp.float64)
        # descriptors per image = counts of the first pyramid level (each votes once per level)
        total = v[:, :self.vocab_size * self.pyramid[0] ** 2].sum(axis=1, keepdims=True)
        v = v / xp.maximum(total, 1e-12)
        if self.tfidf:
            if self.idf_ is None:
                raise RuntimeError("tfidf=True needs idf weights: call fit(...) or fit_idf("
                                   "counts) first")
            v = v * _on(xp, self.idf_).astype(xp.float64)[None, :]
        if self.power is not None:
            v = xp.sign(v) * xp.abs(v) ** self.power
        if self.norm == "l2":
            v = v / xp.maximum(xp.sqrt((v * v).sum(axis=1, keepdims=True)), 1e-12)
        elif self.norm == "l1":
            v = v / xp.maximum(xp.abs(v).sum(axis=1, keepdims=True), 1e-12)
        return v.astype(xp.float32)

    def fit(self, descriptors, **where):
        """:meth:`fit_vocabulary`, then (with ``tfidf``) :meth:`fit_idf` on the counts of the
        same images; ``where`` as in :meth:`counts`.  Returns ``self``."""
        self.fit_vocabulary(descriptors)
        if self.tfidf:
            self.fit_idf(self.counts(descriptors, **where))
        return self

    def transform(self, descriptors, **where):
        """Encoded images, float32 (N, F): ``weight(counts(descriptors, **where))``."""
        return self.weight(self.counts(descriptors, **where))

    def fit_transform(self, descriptors, **where):
        return self.fit(descriptors, **where).transform(descriptors, **where)

    # ------------------------------------------------------------------ save / load
    def save(self, path) -> None:
        """Write the vocabulary, idf and settings to an ``.npz`` file (no pickle)."""
        self._check_fitted()
        config = {k: getattr(self, k) for k in _CONFIG}
        config.update(format=_FORMAT, soft_sigma=self.soft_sigma_)
        state = {"config": numpy.frombuffer(json.dumps(config).encode(), numpy.uint8),
                 "vocabulary": self.vocabulary_}
        if self.idf_ is not None:
            state["idf"] = self.idf_
        save_state(path, state)

    @classmethod
    def load(cls, path) -> "BagOfWords":
        """A BagOfWords from :meth:`save`'s file; arrays go to the active backend.
        Raises ``ValueError`` for files that are not such a save."""
        state = load_state(path)   # ValueError for non-npz files
        if "config" not in state or "vocabulary" not in state:
            raise ValueError(f"{str(path)!r} is not a saved BagOfWords (keys "
                             f"{sorted(state)}; expected 'config' and 'vocabulary')")
        try:
            config = json.loads(state["config"].astype(numpy.uint8).tobytes().decode())
            if config.pop("format") != _FORMAT:
                raise ValueError("unknown format")
            sigma = config.pop("soft_sigma")
            bow = cls(**{**config, "pyramid": tuple(config["pyramid"])})
        except (ValueError, UnicodeDecodeError, KeyError, AttributeError, TypeError) as exc:
            raise ValueError(f"{str(path)!r} is not a saved BagOfWords ({_FORMAT}): bad "
                             f"config ({type(exc).__name__}: {exc})") from exc
        V = state["vocabulary"]
        if V.ndim != 2 or V.shape[0] != bow.vocab_size or V.dtype != numpy.float32:
            raise ValueError(f"{str(path)!r}: vocabulary must be float32 ({bow.vocab_size}, D), "
                             f"got {V.dtype} {V.shape}")
        if "idf" in state and state["idf"].shape != (bow.n_features,):
            raise ValueError(f"{str(path)!r}: idf must have shape ({bow.n_features},), "
                             f"got {state['idf'].shape}")
        b = B.get_backend()
        bow.vocabulary_ = b.asarray(V)
        bow.idf_ = b.asarray(state["idf"]) if "idf" in state else None
        bow.soft_sigma_ = sigma
        return bow


def _on(xp, a):
    """``a`` on the backend of ``xp`` (fitted state may come from another backend)."""
    return a if B.backend_of(a).xp is xp else B._backend_for_xp(xp).asarray(B.to_host(a))
