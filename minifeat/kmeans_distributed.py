"""k-means across MPI ranks (``minidl.distributed``): each rank holds its own rows -- the
descriptors of its share of the images -- and every Lloyd iteration allreduces the per-cluster
sums and counts, so the centres are those of k-means over all ranks' rows together.

::

    # under mpiexec -n R: each rank extracts the descriptors of images[rank::R]
    bow = BagOfWords(vocab_size=200)
    fit_vocabulary_distributed(bow, my_descriptors)     # the same vocabulary on every rank

Seeding: k-means++ on a sample of ``init_sample`` rows drawn by *global* row index (rank
order), gathered to every rank; so the result does not depend on how the rows are split, and
one process over all rows gives the same centres (tests/minidl/test_distributed.py).
An empty cluster keeps its centre (KMeans re-seeds it at far samples, which would need a
global arg-max).  Arrays stay on their backend; only the (K, D) sums travel.
"""
from __future__ import annotations

import math

import numpy

from minidl import backend as B
from minidl import distributed
from minifeat.kmeans import KMeans, _assign

__all__ = ["kmeans_distributed", "fit_vocabulary_distributed"]


def _gather_rows(X, index_local):
    """Rows ``index_local`` of every rank's X, concatenated in rank order, on every rank."""
    mine = B.to_host(X[B.get_array_module(X).asarray(index_local)]) if len(index_local) \
        else numpy.zeros((0, X.shape[1]), B.to_host(X[:0]).dtype)
    comm = distributed.mpi_comm()
    parts = [mine] if comm is None else comm.allgather(mine)   # once: a pickled sample is fine
    return numpy.concatenate(parts)


def kmeans_distributed(X, n_clusters: int, max_iter: int = 100, tol: float = 1e-4,
                       seed: int = 0, init_sample: int = 20000,
                       chunk_size: int = 4096) -> KMeans:
    """Lloyd's k-means over the rows of every rank's ``X`` (N_rank, D).

    Returns a fitted :class:`~minifeat.kmeans.KMeans` (``cluster_centers_`` (K, D) on X's
    backend, identical on every rank; ``inertia_`` and ``inertia_history_`` over all rows;
    ``labels_`` of this rank's rows; ``n_iter_``)."""
    xp = B.get_array_module(X)
    if X.ndim != 2:
        raise ValueError(f"kmeans_distributed: X must be (N, D), got shape {X.shape}")
    sizes = distributed.allreduce_host(
        numpy.eye(distributed.world_size())[distributed.rank()] * X.shape[0]).astype(int)
    total, offset = int(sizes.sum()), int(sizes[:distributed.rank()].sum())
    if total < n_clusters:
        raise ValueError(f"kmeans_distributed: need at least n_clusters={n_clusters} rows over "
                         f"all ranks, got {total}")
    rng = numpy.random.default_rng(seed)
    pick = numpy.sort(rng.choice(total, min(init_sample, total), replace=False))
    local = pick[(pick >= offset) & (pick < offset + X.shape[0])] - offset
    sample = xp.asarray(_gather_rows(X, local))
    C = KMeans(n_clusters, max_iter=1, seed=seed, chunk_size=chunk_size).fit(sample) \
        .cluster_centers_.astype(X.dtype)
    # the tolerance relative to the data's mean variance, over all rows
    moments = distributed.allreduce_host(numpy.concatenate(
        [B.to_host(X.sum(axis=0)), B.to_host((X * X).sum(axis=0))]).astype(numpy.float64))
    mean, sq = moments[:X.shape[1]] / total, moments[X.shape[1]:] / total
    threshold = tol * float(numpy.mean(sq - mean ** 2))
    history, n_iter = [], 0
    for n_iter in range(1, max_iter + 1):
        _, mins, sums, counts = _assign(xp, X, C, chunk_size, accumulate=True)
        inertia = xp.reshape(mins.sum(), (1,)).astype(xp.float64)
        sums, counts = sums.astype(xp.float64), counts.astype(xp.float64)
        distributed.allreduce_sum_([sums, counts, inertia])
        distributed.broadcast_([sums, counts, inertia])   # rank 0's rounding everywhere
        history.append(float(inertia[0]))
        new = xp.where(counts[:, None] > 0, sums / xp.maximum(counts, 1)[:, None],
                       C.astype(xp.float64)).astype(X.dtype)
        shift = float(((new - C) ** 2).sum())
        C = new
        if shift <= threshold:
            break
    km = KMeans(n_clusters, init=C, max_iter=max_iter, tol=tol, seed=seed,
                chunk_size=chunk_size)
    labels, mins, _, _ = _assign(xp, X, C, chunk_size)
    inertia = distributed.allreduce_host([float(mins.sum())])[0]
    km.cluster_centers_, km.labels_, km.inertia_ = C, labels, float(inertia)
    km.inertia_history_, km.n_iter_ = history, n_iter
    return km


def fit_vocabulary_distributed(bow, descriptors, **kwargs):
    """``bow.fit_vocabulary`` with the descriptors spread over the ranks: (N, P, D) or (M, D)
    on each rank; the same vocabulary ends on every rank.  Returns ``bow``."""
    X = descriptors.reshape(-1, descriptors.shape[-1])
    xp = B.get_array_module(X)
    km = kmeans_distributed(X.astype(xp.float32), bow.vocab_size, seed=bow.seed or 0,
                            chunk_size=bow.chunk_size, **kwargs)
    total = int(distributed.allreduce_host([X.shape[0]])[0])
    bow.vocabulary_ = km.cluster_centers_.astype(xp.float32)
    bow.soft_sigma_ = bow.soft_sigma if bow.soft_sigma is not None \
        else max(math.sqrt(km.inertia_ / total), 1e-6)
    bow.idf_ = None
    return bow
