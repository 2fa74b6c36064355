"""k-means clustering (Lloyd's algorithm and mini-batch), written once over ``xp``.

Shape legend: ``X`` is ``(N, D)`` (N samples of dimension D); centres are ``(K, D)``; labels
are ``(N,)`` int64; distances ``(N, K)``.

* Squared distances come from matrix products, ``||x||^2 - 2 x c^T + ||c||^2`` (clipped at 0),
  computed ``chunk_size`` rows at a time so memory stays ``O(chunk_size * K)``.
* k-means++ seeding (Arthur & Vassilvitskii 2007), greedy variant: each new centre is the best
  of ``2 + log K`` candidates drawn with probability proportional to ``D(x)^2``.  The uniform
  numbers come from the host ``numpy.random.Generator`` (CuPy's has no ``choice``); the draw is
  a ``searchsorted`` into the cumulative sum of ``D^2`` on the device.
* Lloyd iterations: assign each sample to the nearest centre, move each centre to the mean of
  its samples (a one-hot matrix product per chunk).  An empty cluster is re-seeded at the
  samples farthest from their centres.  Stops when the squared centre shift is at most
  ``tol * mean(var(X, axis=0))`` or after ``max_iter`` iterations.  The inertia of each
  assignment is recorded in ``inertia_history_``; it never increases (each half-step lowers
  the same objective).
* Mini-batch (Sculley 2010) when ``batch_size`` is set: per batch, each centre moves towards
  the mean of its batch samples with rate ``batch count / total count so far``.  ``max_iter``
  then counts passes over the data (epochs); ``inertia_history_`` holds the full-data inertia
  after each epoch.
"""
from __future__ import annotations

import math

import numpy

from minidl.backend import get_array_module, host_rng, to_host

__all__ = ["KMeans", "MiniBatchKMeans", "squared_distances"]


def _is_int(v) -> bool:
    return isinstance(v, (int, numpy.integer)) and not isinstance(v, bool)


def squared_distances(X, C, chunk_size: int = 4096):
    """All squared Euclidean distances ``(N, K)`` between the rows of X (N, D) and C (K, D)."""
    xp = get_array_module(X, C)
    c2 = (C * C).sum(axis=1)
    out = []
    for s in range(0, X.shape[0], chunk_size):
        x = X[s:s + chunk_size]
        d = (x * x).sum(axis=1)[:, None] - 2.0 * (x @ C.T) + c2[None, :]
        out.append(xp.maximum(d, 0))
    return xp.concatenate(out, axis=0) if out else xp.zeros((0, C.shape[0]), dtype=X.dtype)


def _assign(xp, X, C, chunk_size, accumulate: bool = False):
    """Nearest centre per row: ``labels (N,), min squared distance (N,)``; with ``accumulate``
    also the per-cluster sums ``(K, D)`` and counts ``(K,)`` (one-hot products per chunk)."""
    K = C.shape[0]
    c2 = (C * C).sum(axis=1)
    labels, mins = [], []
    sums = xp.zeros(C.shape, dtype=X.dtype) if accumulate else None
    counts = xp.zeros(K, dtype=X.dtype) if accumulate else None
    ks = xp.arange(K)
    for s in range(0, X.shape[0], chunk_size):
        x = X[s:s + chunk_size]
        d = xp.maximum((x * x).sum(axis=1)[:, None] - 2.0 * (x @ C.T) + c2[None, :], 0)
        lab = xp.argmin(d, axis=1)
        labels.append(lab)
        mins.append(xp.take_along_axis(d, lab[:, None], axis=1)[:, 0])
        if accumulate:
            onehot = (lab[:, None] == ks[None, :]).astype(X.dtype)
            sums = sums + onehot.T @ x
            counts = counts + onehot.sum(axis=0)
    return xp.concatenate(labels), xp.concatenate(mins), sums, counts


class KMeans:
    """k-means clustering.

    Parameters
    ----------
    n_clusters : int >= 1, K.
    init : "k-means++" | "random" | array of shape (K, D), the initial centres.
    n_init : int >= 1, runs from different seeds; the lowest inertia wins (ignored for an
        array ``init``).
    max_iter : int >= 1, Lloyd iterations (or epochs in mini-batch mode).
    tol : float >= 0, relative tolerance on the squared centre shift (see module doc).
    seed : int or None, seeds the host generator used for sampling (None: minidl's
        :func:`~minidl.backend.host_rng`).
    batch_size : int >= 1 or None; set it for mini-batch k-means.
    chunk_size : int >= 1, rows per distance block (memory ``chunk_size * K``).

    Attributes (after ``fit``)
    --------------------------
    cluster_centers_ : (K, D) array on the backend of X.
    labels_ : (N,) int64 array.
    inertia_ : float, sum of squared distances of the samples to their centres.
    inertia_history_ : list of float, inertia after each iteration (epoch) of the best run.
    n_iter_ : int.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.concatenate([np.zeros((5, 2)), np.ones((5, 2)) * 10])
    >>> km = KMeans(2, seed=0).fit(X)
    >>> sorted(km.cluster_centers_[:, 0].tolist()), km.inertia_
    ([0.0, 10.0], 0.0)
    """

    def __init__(self, n_clusters: int = 8, init="k-means++", n_init: int = 1,
                 max_iter: int = 300, tol: float = 1e-4, seed: int | None = None,
                 batch_size: int | None = None, chunk_size: int = 4096):
        if not _is_int(n_clusters) or n_clusters < 1:
            raise ValueError(f"`n_clusters` must be an int >= 1, got {n_clusters!r}")
        if isinstance(init, str):
            if init not in ("k-means++", "random"):
                raise ValueError(f"`init` must be 'k-means++', 'random' or an array of shape "
                                 f"(n_clusters, D), got {init!r}")
        elif not hasattr(init, "shape") or len(init.shape) != 2 or init.shape[0] != n_clusters:
            raise ValueError(f"`init` as an array must have shape ({n_clusters}, D), got "
                             f"{getattr(init, 'shape', type(init).__name__)}")
        for name, v in (("n_init", n_init), ("max_iter", max_iter), ("chunk_size", chunk_size)):
            if not _is_int(v) or v < 1:
                raise ValueError(f"`{name}` must be an int >= 1, got {v!r}")
        if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0:
            raise ValueError(f"`tol` must be a float >= 0, got {tol!r}")
        if batch_size is not None and (not _is_int(batch_size) or batch_size < 1):
            raise ValueError(f"`batch_size` must be an int >= 1 or None, got {batch_size!r}")
        if seed is not None and (not _is_int(seed) or seed < 0):
            raise ValueError(f"`seed` must be a non-negative int or None, got {seed!r}")
        self.n_clusters, self.init, self.n_init = int(n_clusters), init, int(n_init)
        self.max_iter, self.tol, self.seed = int(max_iter), float(tol), seed
        self.batch_size, self.chunk_size = batch_size, int(chunk_size)

    def __repr__(self):
        init = self.init if isinstance(self.init, str) else "array"
        return (f"{type(self).__name__}(n_clusters={self.n_clusters}, init={init!r}, "
                f"max_iter={self.max_iter}, tol={self.tol}, batch_size={self.batch_size})")

    # ------------------------------------------------------------------ validation

    def _check_X(self, X, fitting: bool):
        if not hasattr(X, "ndim"):
            raise TypeError(f"`X` must be an array of shape (N, D), got {type(X).__name__}")
        if X.ndim != 2:
            raise ValueError(f"`X` must be 2-D (N, D), got shape {tuple(X.shape)}")
        if X.dtype.kind not in "fiu":
            raise TypeError(f"`X` must have a real numeric dtype, got {X.dtype}")
        xp = get_array_module(X)
        if X.dtype.kind != "f":
            X = X.astype(xp.float64)
        if fitting and X.shape[0] < self.n_clusters:
            raise ValueError(f"`X` must have at least n_clusters={self.n_clusters} rows, got "
                             f"{X.shape[0]}")
        if not fitting:
            if not hasattr(self, "cluster_centers_"):
                raise RuntimeError(f"this {type(self).__name__} is not fitted yet: call fit(X)")
            D = self.cluster_centers_.shape[1]
            if X.shape[1] != D:
                raise ValueError(f"`X` must have {D} columns (as in fit), got {X.shape[1]}")
        return xp, X

    # ------------------------------------------------------------------ seeding

    def _kmeans_pp(self, xp, X, rng):
        """Greedy k-means++: each step draws ``2 + log K`` candidates ~ D^2 and keeps the one
        that lowers the potential ``sum D^2`` most."""
        N, K = X.shape[0], self.n_clusters
        trials = 2 + int(math.log(K))
        centers = [X[int(rng.integers(N))]]
        d2 = squared_distances(X, centers[0][None], self.chunk_size)[:, 0]
        for _ in range(1, K):
            cum = xp.cumsum(d2)
            total = float(cum[-1])
            if total <= 0:          # fewer distinct points than K: any point will do
                idx = xp.asarray(rng.integers(N, size=trials))
            else:
                u = xp.asarray(rng.random(trials) * total).astype(cum.dtype)
                idx = xp.minimum(xp.searchsorted(cum, u, side="right"), N - 1)
            cand = squared_distances(X, X[idx], self.chunk_size)           # (N, trials)
            pot = xp.minimum(cand, d2[:, None]).sum(axis=0)
            best = int(xp.argmin(pot))
            centers.append(X[int(idx[best])])
            d2 = xp.minimum(d2, cand[:, best])
        return xp.stack(centers)

    def _init_centers(self, xp, X, rng):
        if not isinstance(self.init, str):
            C = xp.asarray(to_host(self.init)).astype(X.dtype)
            if C.shape[1] != X.shape[1]:
                raise ValueError(f"`init` must have {X.shape[1]} columns like X, got "
                                 f"{C.shape[1]}")
            return C
        if self.init == "random":
            idx = rng.choice(X.shape[0], size=self.n_clusters, replace=False)
            return X[xp.asarray(idx)]
        return self._kmeans_pp(xp, X, rng)

    # ------------------------------------------------------------------ fitting

    def _reseed_empty(self, xp, X, C, counts, mins):
        """Move the centres of empty clusters onto the samples farthest from their centres."""
        empty = numpy.nonzero(to_host(counts) == 0)[0]
        if len(empty) == 0:
            return C
        far = xp.argsort(-mins)[:len(empty)]
        C = C.copy()
        C[xp.asarray(empty)] = X[far]
        return C

    def _lloyd(self, xp, X, C, tol):
        history = []
        n_iter = 0
        for n_iter in range(1, self.max_iter + 1):
            _, mins, sums, counts = _assign(xp, X, C, self.chunk_size, accumulate=True)
            history.append(float(mins.sum()))
            new = xp.where(counts[:, None] > 0, sums / xp.maximum(counts, 1)[:, None], C)
            new = self._reseed_empty(xp, X, new, counts, mins)
            shift = float(((new - C) ** 2).sum())
            C = new
            if shift <= tol:
                break
        return C, history, n_iter

    def _minibatch(self, xp, X, C, tol, rng):
        N, K = X.shape[0], self.n_clusters
        b = min(self.batch_size, N)
        total = xp.zeros(K, dtype=X.dtype)
        ks = xp.arange(K)
        history = []
        n_iter = 0
        for n_iter in range(1, self.max_iter + 1):
            start = C
            perm = rng.permutation(N)
            for s in range(0, N, b):
                xb = X[xp.asarray(perm[s:s + b])]
                lab, mins, _, _ = _assign(xp, xb, C, self.chunk_size)
                onehot = (lab[:, None] == ks[None, :]).astype(X.dtype)
                nb = onehot.sum(axis=0)
                total = total + nb
                rate = nb / xp.maximum(total, 1)
                mean = (onehot.T @ xb) / xp.maximum(nb, 1)[:, None]
                C = C + rate[:, None] * (mean - C)
            _, mins, _, counts = _assign(xp, X, C, self.chunk_size, accumulate=True)
            history.append(float(mins.sum()))
            C = self._reseed_empty(xp, X, C, counts, mins)
            if float(((C - start) ** 2).sum()) <= tol:
                break
        return C, history, n_iter

    def fit(self, X):
        """Cluster ``X`` (N, D); returns ``self``."""
        xp, X = self._check_X(X, fitting=True)
        rng = host_rng() if self.seed is None else numpy.random.default_rng(self.seed)
        tol = self.tol * float(X.var(axis=0).mean())
        best = None
        runs = 1 if not isinstance(self.init, str) else self.n_init
        for _ in range(runs):
            C = self._init_centers(xp, X, rng)
            if self.batch_size is None:
                C, history, n_iter = self._lloyd(xp, X, C, tol)
            else:
                C, history, n_iter = self._minibatch(xp, X, C, tol, rng)
            labels, mins, _, _ = _assign(xp, X, C, self.chunk_size)
            inertia = float(mins.sum())
            if best is None or inertia < best[0]:
                best = (inertia, C, labels, history, n_iter)
        self.inertia_, self.cluster_centers_, self.labels_, history, self.n_iter_ = best
        self.inertia_history_ = history
        return self

    def predict(self, X):
        """Index of the nearest centre for each row of X (N, D) -> (N,) int64."""
        xp, X = self._check_X(X, fitting=False)
        return _assign(xp, X, self.cluster_centers_.astype(X.dtype), self.chunk_size)[0]

    def fit_predict(self, X):
        return self.fit(X).labels_

    def transform(self, X):
        """Euclidean distances from each row of X (N, D) to each centre -> (N, K)."""
        xp, X = self._check_X(X, fitting=False)
        return xp.sqrt(squared_distances(X, self.cluster_centers_.astype(X.dtype),
                                         self.chunk_size))

    def score(self, X):
        """Negative inertia of X under the fitted centres (higher is better)."""
        xp, X = self._check_X(X, fitting=False)
        return -float(_assign(xp, X, self.cluster_centers_.astype(X.dtype),
                              self.chunk_size)[1].sum())


class MiniBatchKMeans(KMeans):
    """:class:`KMeans` in mini-batch mode (Sculley 2010); ``batch_size`` defaults to 1024."""

    def __init__(self, n_clusters: int = 8, batch_size: int = 1024, **kwargs):
        super().__init__(n_clusters, batch_size=batch_size, **kwargs)
