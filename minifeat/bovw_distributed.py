"""The bag-of-words vocabulary over images split between MPI ranks (``minidl.distributed``).

Under ``mpiexec -n R`` each rank extracts the descriptors of its share of the images -- a
contiguous block of the list, ``shard_range`` -- and nothing is gathered: the k-means runs on
every rank's own rows, allreducing the (K, D) centroid sums and the counts each iteration
(:func:`minifeat.kmeans_distributed.kmeans_distributed`).  Every rank ends with the same
vocabulary, and it is the one a single process computes over all the images:

- the descriptors sampled for the vocabulary (``bow.max_descriptors`` of them, as
  :meth:`BagOfWords.fit_vocabulary` samples) are drawn by *global* descriptor index, image
  after image in the list's order, from ``bow.seed``, whatever the split;
- the blocks are contiguous and in rank order, so the ranks' sampled rows in rank order are
  the single process's sample in order, which k-means++ seeding (by global row index) needs.

::

    paths = sorted(folder.glob("*.jpg"))              # the same list on every rank
    bow = BagOfWords(200, seed=0)
    bow, mine, feats = fit_vocabulary_from_images(bow, paths, extract)
    # mine: this rank's indices into paths; feats: extract(paths[i]) for i in mine

Costs: extraction (the bulk of the time) splits R ways; the k-means sends 2 K D + K + 1
numbers per iteration; the per-image counts, one integer per image, travel once.
"""
from __future__ import annotations

import numpy

from minidl import backend as B
from minidl import distributed
from minifeat.kmeans_distributed import fit_vocabulary_distributed

__all__ = ["shard_range", "extract_shard", "fit_vocabulary_sharded",
           "fit_vocabulary_from_images", "allgather_rows"]


def shard_range(n: int, rank: int | None = None, size: int | None = None) -> range:
    """This rank's contiguous block of ``range(n)``: sizes differ by at most one, blocks in
    rank order (rank 0 first)."""
    rank = distributed.rank() if rank is None else rank
    size = distributed.world_size() if size is None else size
    cut = [n * r // size for r in range(size + 1)]
    return range(cut[rank], cut[rank + 1])


def extract_shard(items, extract):
    """``(indices, [extract(items[i]) for i in indices])`` for this rank's block of ``items``
    (a sequence, the same on every rank)."""
    mine = shard_range(len(items))
    return mine, [extract(items[i]) for i in mine]


def _global_layout(descriptors, n_images, mine):
    """(descriptors per image over all ranks (n_images,), D) from every rank's list."""
    if len(descriptors) != len(mine):
        raise ValueError(f"descriptors: this rank ({distributed.rank()} of "
                         f"{distributed.world_size()}) holds images {mine.start}.."
                         f"{mine.stop - 1} of {n_images} and needs one array each, got "
                         f"{len(descriptors)}")
    vec = numpy.zeros(n_images + 2)
    for i, d in zip(mine, descriptors):
        if getattr(d, "ndim", 0) != 2:
            raise ValueError(f"descriptors: image {i} must give an (n, D) array, got "
                             f"{getattr(d, 'shape', type(d).__name__)}")
        vec[i] = d.shape[0]
    dims = {d.shape[1] for d in descriptors if d.shape[0]}
    if len(dims) > 1:
        raise ValueError(f"descriptors: every image's descriptors must have the same length, "
                         f"got {sorted(dims)} on rank {distributed.rank()}")
    if dims:
        vec[n_images:] = dims.pop(), 1
    vec = distributed.allreduce_host(vec)     # counts: each rank fills its block, zeros else
    if vec[n_images + 1] == 0:
        raise ValueError(f"no image of the {n_images} gave any descriptor")
    D = vec[n_images] / vec[n_images + 1]
    if D != int(D):
        raise ValueError("descriptors: the ranks' descriptors have different lengths")
    return vec[:n_images].astype(numpy.int64), int(D)


def fit_vocabulary_sharded(bow, descriptors, n_images: int, indices=None, **kmeans_args):
    """Fit ``bow``'s vocabulary (a :class:`~minifeat.bovw.BagOfWords`) on the descriptors of
    ``n_images`` images split over the ranks: ``descriptors`` lists this rank's images' (n_i,
    D) arrays, for the images ``indices`` (default ``shard_range(n_images)``: any contiguous
    range, the ranks' ranges following each other in rank order).  The same vocabulary ends on
    every rank and it does not depend on the number of ranks.  ``kmeans_args`` go to
    :func:`~minifeat.kmeans_distributed.kmeans_distributed` (``tol``); ``init_sample`` and
    ``max_iter`` default to the BagOfWords's.  Returns ``bow``."""
    mine = shard_range(n_images) if indices is None else indices
    if not isinstance(mine, range) or mine.step != 1 or mine.start < 0 \
            or mine.stop > n_images:
        raise ValueError(f"indices: this rank's images must be a contiguous range within "
                         f"range({n_images}), got {indices!r}")
    counts, D = _global_layout(descriptors, n_images, mine)
    total = int(counts.sum())
    if total < bow.vocab_size:
        raise ValueError(f"need at least vocab_size={bow.vocab_size} descriptors, got {total} "
                         f"from {n_images} images")
    offset = int(counts[:mine.start].sum())
    local = [d for d in descriptors if d.shape[0]]
    xp = B.get_array_module(local[0]) if local else numpy
    X = xp.concatenate(local).astype(xp.float32) if local else xp.zeros((0, D), xp.float32)
    if total > bow.max_descriptors:   # the sample BagOfWords.fit_vocabulary takes, by global index
        pick = numpy.sort(numpy.random.default_rng(bow.seed).choice(
            total, bow.max_descriptors, replace=False))
        keep = pick[(pick >= offset) & (pick < offset + X.shape[0])] - offset
        X = X[xp.asarray(keep)]
    kmeans_args.setdefault("init_sample", bow.init_sample)
    kmeans_args.setdefault("max_iter", bow.max_iter)
    return fit_vocabulary_distributed(bow, X, **kmeans_args)


def fit_vocabulary_from_images(bow, paths, extract, **kmeans_args):
    """Each rank runs ``extract(path) -> (n, D) descriptors`` on its block of ``paths`` (the
    same list on every rank), then :func:`fit_vocabulary_sharded`.  Returns ``(bow, indices,
    features)``: this rank's indices into ``paths`` and their descriptors, to encode without
    extracting again."""
    mine, features = extract_shard(list(paths), extract)
    fit_vocabulary_sharded(bow, features, len(paths), **kmeans_args)
    return bow, mine, features


def allgather_rows(rows, n: int):
    """The (n, F) array whose rows ``shard_range(n)`` are this rank's ``rows`` (len(mine), F)
    and the others every other rank's, on every rank (host float64: a sum with zeros is
    exact).  For small per-image results such as bag-of-words counts."""
    mine = shard_range(n)
    rows = numpy.asarray(B.to_host(rows), dtype=numpy.float64)
    if rows.ndim != 2 or rows.shape[0] != len(mine):
        raise ValueError(f"allgather_rows: this rank holds rows {mine.start}..{mine.stop - 1} "
                         f"of {n}: rows must be ({len(mine)}, F), got {rows.shape}")
    full = numpy.zeros((n, rows.shape[1]))
    full[mine.start:mine.stop] = rows
    distributed.allreduce_sum_([full])
    return full
