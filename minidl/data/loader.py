"""Mini-batches from in-memory arrays: :class:`DataLoader`.

::

    x, y = load_mnist("train")                     # uint8 (60000, 28, 28), uint8 (60000,)
    loader = DataLoader(x, y, batch_size=128, shuffle=True, seed=0, transform=RandomShift(2))
    for xb, yb in loader:                          # xb float32 (128, 1, 28, 28) in [0, 1]
        ...                                        # yb int64 (128,), both on the device

The data set stays on the host once, as given (uint8 images: 47 MB for MNIST, not 188 MB of
float32).  Each batch is gathered on the host, converted to float, transformed, and only then
moved to the active backend's device with :func:`minidl.backend.to_device`; so the device holds
one batch at a time and the same loader serves NumPy, CuPy and the strict backend.

Shapes (``N`` samples, ``B`` batch size)::

    images (N, H, W)     -> batches (B, 1, H, W)   a channel axis is added (for Conv2d)
    images (N, C, H, W)  -> batches (B, C, H, W)
    images (N, D)        -> batches (B, D)
    labels (N,) integer  -> batches (B,) int64

Data parallelism (``shard=True``, under ``mpiexec -n R``): every rank draws the same epoch
order from the shared seed and cuts each *global* batch of ``batch_size`` samples into R
disjoint slices, taking its own: rank r of R gets ``batch_size / R`` samples of every batch,
and together the ranks see exactly the batches one process would.  ``state_dict()`` records
the epoch's order and the next batch, so a run resumed mid-epoch (``minidl.train.fit(...,
resume=...)``) continues with the same batches, on any number of ranks.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy

from minidl import backend as B
from minidl import distributed
from minidl.serialization import array_to_json, json_to_array

__all__ = ["DataLoader"]


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, numpy.integer)) or value < minimum:
        raise ValueError(f"DataLoader: {name} must be an int >= {minimum}, got {value!r}")
    return int(value)


class DataLoader:
    """Iterate over ``(images, labels)`` in mini-batches on the active device.

    Parameters
    ----------
    images : array_like of shape (N, ...), or a data set with ``.images`` and ``.labels``
        (such as :class:`minidl.data.MNIST`; then ``labels`` is left out).  Kept on the host as
        given; uint8 is the compact choice for images.
    labels : array_like of shape (N,), integer
        Class indices; batches carry them as int64.
    batch_size : int
        Samples per batch (>= 1).  The last batch is smaller when ``batch_size`` does not
        divide N, unless ``drop_last``.
    shuffle : bool
        Visit the samples in a new random order every epoch (every ``iter(loader)``).
    seed : int or None
        Seed of the loader's own host Generator, so the sequence of epoch orders is
        reproducible; None draws from ``minidl.backend.host_rng()`` (seeded by ``minidl.seed``),
        or with ``shard`` seeds the loader's own Generator from rank 0's host Generator.
    drop_last : bool
        Skip the last, incomplete batch.
    transform : callable or None
        ``transform(batch) -> batch`` applied to the host float batch (``numpy.ndarray``
        (B, C, H, W), default dtype, in [0, 1]) before the transfer; see
        :mod:`minidl.data.transforms`.
    scale : float or None
        Factor applied while converting to float; None (default) means ``1/255`` for uint8
        images (pixels to [0, 1]) and 1 otherwise.
    dtype : numpy dtype or None
        The float dtype of the image batches; None means ``minidl.get_default_dtype()`` at the
        time of iteration (float32 unless changed).
    shard : bool or (rank, world_size)
        Data parallelism: this rank takes its slice (``batch_size / world_size`` samples) of
        every global batch; ``batch_size`` stays the global batch and must be divisible by
        the world size.  The same ``len()`` on every rank.  A no-op in a one-process world.
        A last global batch that does not split evenly gives the first ranks one sample more
        (``minidl.train.fit`` weights their gradients by ``last_share``); one smaller than the
        world size is skipped on every rank.  A ``(rank, world_size)`` pair names the slice
        explicitly (tests, or a launcher of your own).

    Yields
    ------
    x : array on the active backend, ``dtype``, shape (B, 1, H, W) for (N, H, W) images.
    y : array on the active backend, int64, shape (B,).

    ``len(loader)`` is the number of batches per epoch: ``ceil(N / batch_size)``, or
    ``N // batch_size`` with ``drop_last``.

    Example
    -------
    >>> import numpy as np
    >>> loader = DataLoader(np.zeros((10, 28, 28), np.uint8), np.arange(10), batch_size=4)
    >>> len(loader), [tuple(x.shape) for x, _ in loader]
    (3, [(4, 1, 28, 28), (4, 1, 28, 28), (2, 1, 28, 28)])
    """

    def __init__(self, images, labels=None, batch_size: int = 64, shuffle: bool = False,
                 seed: int | None = None, drop_last: bool = False,
                 transform: Callable | None = None, scale: float | None = None, dtype=None,
                 shard: bool | tuple = False):
        if labels is None:
            if not (hasattr(images, "images") and hasattr(images, "labels")):
                raise TypeError("DataLoader: labels is required unless images is a data set "
                                "with .images and .labels attributes (e.g. minidl.data.MNIST)")
            images, labels = images.images, images.labels
        images = numpy.asarray(B.to_host(images))
        labels = numpy.asarray(B.to_host(labels))
        if images.ndim < 2:
            raise ValueError(f"DataLoader: images must have shape (N, ...) with at least 2 "
                             f"dimensions, got shape {images.shape}")
        if not (numpy.issubdtype(images.dtype, numpy.integer)
                or numpy.issubdtype(images.dtype, numpy.floating)) \
                or images.dtype == numpy.bool_:
            raise TypeError(f"DataLoader: images must be an integer or float array, "
                            f"got dtype {images.dtype}")
        if labels.ndim != 1:
            raise ValueError(f"DataLoader: labels must have shape (N,), got shape {labels.shape}")
        if labels.size and not numpy.issubdtype(labels.dtype, numpy.integer):
            raise TypeError(f"DataLoader: labels must be integer class indices, "
                            f"got dtype {labels.dtype}")
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"DataLoader: images and labels must have the same length N; "
                             f"got {images.shape[0]} images (shape {images.shape}) and "
                             f"{labels.shape[0]} labels")
        self.batch_size = _check_int(batch_size, "batch_size", 1)
        if seed is not None:
            seed = _check_int(seed, "seed", 0)
        if transform is not None and not callable(transform):
            raise TypeError(f"DataLoader: transform must be callable or None, "
                            f"got {type(transform).__name__}")
        if scale is not None and not (isinstance(scale, (int, float)) and math.isfinite(scale)):
            raise ValueError(f"DataLoader: scale must be a finite number or None, got {scale!r}")
        if dtype is not None and not numpy.issubdtype(numpy.dtype(dtype), numpy.floating):
            raise TypeError(f"DataLoader: dtype must be a float dtype or None, got {dtype!r}")
        self.images = images
        self.labels = labels.astype(numpy.int64, copy=False)
        self.shuffle = bool(shuffle)
        self.seed = seed
        self.drop_last = bool(drop_last)
        self.transform = transform
        self.scale = (1.0 / 255.0 if images.dtype == numpy.uint8 else 1.0) if scale is None \
            else float(scale)
        self.dtype = None if dtype is None else numpy.dtype(dtype)
        self._rng = None if seed is None else numpy.random.default_rng(seed)
        if isinstance(shard, tuple):
            if len(shard) != 2 or not all(isinstance(v, int) for v in shard) \
                    or not 0 <= shard[0] < shard[1]:
                raise ValueError(f"DataLoader: shard must be a bool or (rank, world_size) with "
                                 f"0 <= rank < world_size, got {shard!r}")
            self.rank, self.world_size = shard
        elif shard:
            self.rank, self.world_size = distributed.rank(), distributed.world_size()
        else:
            self.rank, self.world_size = 0, 1
        self.shard = bool(shard)
        if self.shard and self._rng is None:
            # every rank must draw the same orders, but minidl's host Generator drifts apart
            # between ranks (an uneven last batch draws fewer augmentation numbers on some):
            # the loader gets its own Generator, seeded once from rank 0's host Generator
            s = numpy.array([B.host_rng().integers(2**62)], numpy.int64)
            if isinstance(shard, bool):
                distributed.broadcast_([s])
            self._rng = numpy.random.default_rng(int(s[0]))
        if self.batch_size % self.world_size:
            w = self.world_size
            lower, upper = self.batch_size // w * w or w, -(-self.batch_size // w) * w
            raise ValueError(f"DataLoader: batch_size (the global batch, {self.batch_size}) "
                             f"must be divisible by the number of processes ({w}) with "
                             f"shard=True, so that every rank takes the same share; use "
                             f"{lower} or {upper}")
        self.last_share = 1.0 / self.world_size  # this rank's fraction of the last batch
        self._order = None      # the epoch's order being iterated (None: 0..N-1)
        self._next = 0          # index of the next global batch of that epoch
        self._resume = None     # (order, next batch) restored by load_state_dict

    # ------------------------------------------------------------------ protocol

    @property
    def num_samples(self) -> int:
        """N, the number of samples in the data set."""
        return int(self.images.shape[0])

    @property
    def local_batch_size(self) -> int:
        """Samples of each full batch on this rank (``batch_size / world_size``)."""
        return self.batch_size // self.world_size

    def __len__(self) -> int:
        n, b = self.num_samples, self.batch_size
        if self.drop_last or 0 < n % b < self.world_size:  # a too-small last batch: skipped
            return n // b
        return -(-n // b)

    def __iter__(self) -> Iterator[tuple]:
        if self._resume is not None:
            order, start = self._resume
            self._resume = None
        else:
            order, start = self._epoch_order(), 0
        self._order = order
        dtype = B.get_default_dtype() if self.dtype is None else self.dtype
        lut = self._lookup_table(dtype)
        n_batches, b = len(self), self.batch_size
        for k in range(start, n_batches):
            lo, hi = k * b, min((k + 1) * b, self.num_samples)
            index = self._my_slice(lo, hi)
            self._next = k + 1
            batch = order[index] if order is not None else index
            yield self._make_batch(batch, dtype, lut)

    def _my_slice(self, lo: int, hi: int) -> slice:
        """This rank's part of the global batch lo:hi (all of it in a one-process world); the
        first (hi - lo) % world_size ranks take one sample more."""
        n, r, w = hi - lo, self.rank, self.world_size
        per, extra = divmod(n, w)
        start = lo + r * per + min(r, extra)
        self.last_share = (per + (r < extra)) / n
        return slice(start, start + per + (r < extra))

    # ------------------------------------------------------------------ resuming

    @property
    def resume_position(self) -> int:
        """The global batch the next ``iter()`` starts at (0 unless resuming mid-epoch)."""
        return 0 if self._resume is None else self._resume[1]

    def state_dict(self) -> dict:
        """Where the loader stands, as host arrays (no pickle): the current epoch's order,
        the next global batch, its Generator's state (JSON bytes), and the world size and
        batch size it ran with (for the message when resumed on another world size)."""
        order = self._order if self._order is not None else numpy.zeros(0, numpy.int64)
        state = {"order": numpy.asarray(order, numpy.int64),
                 "next": numpy.array(self._next, numpy.int64),
                 "world_size": numpy.array(self.world_size, numpy.int64),
                 "batch_size": numpy.array(self.batch_size, numpy.int64),
                 "num_samples": numpy.array(self.num_samples, numpy.int64)}
        if self._rng is not None:
            state["rng"] = json_to_array(self._rng.bit_generator.state)
        return state

    def load_state_dict(self, state) -> None:
        """Continue from ``state`` (:meth:`state_dict`): the next ``iter()`` resumes the saved
        epoch at its next batch, with the same order, split over this world's ranks."""
        n = int(state["num_samples"])
        if n != self.num_samples or int(state["batch_size"]) != self.batch_size:
            raise ValueError(f"DataLoader.load_state_dict: the state is of a loader over {n} "
                             f"samples in batches of {int(state['batch_size'])}, this one has "
                             f"{self.num_samples} samples in batches of {self.batch_size}")
        if "rng" in state and self._rng is not None:
            self._rng.bit_generator.state = array_to_json(state["rng"])
        order = numpy.asarray(state["order"], numpy.int64)
        start = int(state["next"])
        self._next = start
        if 0 < start < len(self):   # mid-epoch: finish that epoch first
            self._resume = (order if order.size else None, start)

    def __repr__(self) -> str:
        return (f"DataLoader(n={self.num_samples}, image_shape={self.images.shape[1:]}, "
                f"batch_size={self.batch_size}, shuffle={self.shuffle}, seed={self.seed}, "
                f"drop_last={self.drop_last}, transform={self.transform!r})")

    # ------------------------------------------------------------------ stages

    def _epoch_order(self) -> numpy.ndarray | None:
        """This epoch's sample order (a fresh permutation per call), or None for 0..N-1."""
        if not self.shuffle:
            return None
        rng = B.host_rng() if self._rng is None else self._rng
        return rng.permutation(self.num_samples)

    def _lookup_table(self, dtype) -> numpy.ndarray | None:
        """For uint8 images, the 256 float values ``v * scale``: one gather converts a batch."""
        if self.images.dtype != numpy.uint8:
            return None
        return (numpy.arange(256, dtype=numpy.float64) * self.scale).astype(dtype)

    def _to_float(self, raw: numpy.ndarray, dtype, lut) -> numpy.ndarray:
        if lut is not None:
            x = lut[raw]
        else:
            x = raw.astype(dtype, copy=True)
            if self.scale != 1.0:
                x *= dtype.type(self.scale)
        if x.ndim == 3:  # (B, H, W) -> (B, 1, H, W): the channel axis Conv2d expects
            x = x[:, None]
        return x

    def _make_batch(self, index, dtype, lut):
        x = self._to_float(self.images[index], dtype, lut)
        if self.transform is not None:
            x = self.transform(x)
        y = self.labels[index]
        return B.to_device(x), B.to_device(numpy.ascontiguousarray(y))
