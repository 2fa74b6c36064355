"""Gradient averaging overlapped with backward, bucket by bucket (PyTorch DDP's Reducer,
Horovod): the allreduce of the last layers' gradients starts while backward still computes
the first layers'.

How::

    reducer = Reducer(model.parameters())      # hooks on every parameter, buckets fixed
    for x, y in loader:
        loss = loss_fn(model(x), y); optimizer.zero_grad()
        reducer.prepare()                       # arm it for this step (weight: uneven batch)
        loss.backward()                         # full buckets start their allreduce here
        reducer.finish()                        # wait all; every .grad is the global mean
        optimizer.step()
    reducer.remove()

- Buckets: the parameters in *reverse* order (backward reaches the last layers first), one
  (backend, dtype) per bucket, about ``bucket_bytes`` each, the first one smaller
  (``first_bucket_bytes``, DDP's 1 MiB) so that communication starts early.
- A parameter is ready when autograd calls its "gradient ready" hook
  (``Tensor.register_post_accumulate_grad_hook``: after its last consumer).  A bucket whose
  parameters are all ready is flattened into one buffer and its nonblocking allreduce
  (``Communicator.iallreduce_sum_``) starts -- in bucket order only, so every rank starts the
  same collectives in the same order even when their backward orders differ.
- ``finish()`` starts the buckets still waiting (parameters that got no gradient this step
  contribute zeros, as in :func:`average_gradients`), waits for all, scales by 1 / world size
  (or not: the weighted sum of an uneven last batch) and gives each parameter its slice of the
  bucket as ``.grad`` (a view: no copy back).

The result equals :func:`~minidl.distributed.data_parallel.average_gradients` bit for bit on 2
ranks (the same sums of the same numbers; for more ranks MPI may pick another reduction order
for other message sizes).

MPI progress.  MPICH advances a nonblocking collective only inside MPI calls: an
``Iallreduce`` started and left alone moves when ``wait()`` is called, which hides nothing.
So while requests are outstanding the reducer *polls* them (``MPI_Test``): from a helper
thread every ``poll_interval`` seconds (``progress="thread"``; needs ``MPI_THREAD_MULTIPLE``,
which mpi4py asks for and MPICH gives; 2 ms: polling every 0.2 ms, the thread's GIL hand-offs
cost the compute 27 %, every 1 ms 0-12 %, every 2 ms nothing measurable, while the CNN's
1.6 MB bucket still completed during backward; benchmarks/bench_reducer_cost.py), or
from the gradient hooks only (``"hooks"``: between layers, too rarely for a large bucket), or
not at all (``None``).  ``"auto"``: the thread when the communicator allows it.  A progress
thread of MPICH's own (``MPICH_ASYNC_PROGRESS=1``) spins on a core: on this 2-core machine it
made every step slower (docs/distributed.md).
"""
from __future__ import annotations

import threading

from minidl import backend as B
from minidl.distributed.comm import BUCKET_BYTES, Communicator, get_communicator

__all__ = ["Reducer", "FIRST_BUCKET_BYTES"]

FIRST_BUCKET_BYTES = 2**20   # DDP's first bucket: small, so that the first allreduce starts early


class _Bucket:
    def __init__(self, index, params):
        self.index, self.params = index, params
        self.ready = 0
        self.flat = self.work = None
        self.done_early = False   # its allreduce completed before finish() was called


class Reducer:
    """Average the gradients of ``params`` over the ranks while backward runs.

    Parameters
    ----------
    params : the parameters (leaf Tensors that require grad; duplicates are dropped), in
        registration (forward) order.
    comm : a :class:`~minidl.distributed.comm.Communicator`; default: the one for the first
        parameter's arrays (``get_communicator``).
    bucket_bytes, first_bucket_bytes : bucket sizes; a parameter larger than its bucket is a
        bucket of its own.
    progress : how the outstanding allreduces are advanced: "auto", "thread", "hooks" or
        None (module docstring).
    poll_interval : seconds between the progress thread's tests.
    """

    def __init__(self, params, comm: Communicator | None = None,
                 bucket_bytes: int = BUCKET_BYTES, first_bucket_bytes: int = FIRST_BUCKET_BYTES,
                 progress: str | None = "auto", poll_interval: float = 2e-3):
        unique = {}
        for p in params:
            unique.setdefault(id(p), p)
        self.params = list(unique.values())
        if not self.params:
            raise ValueError("Reducer: params is empty")
        for name, value in (("bucket_bytes", bucket_bytes),
                            ("first_bucket_bytes", first_bucket_bytes)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"Reducer: {name} must be a positive int, got {value!r}")
        self.comm = comm or get_communicator(self.params[0].data)
        if progress not in ("auto", "thread", "hooks", None):
            raise ValueError(f"Reducer: progress must be 'auto', 'thread', 'hooks' or None, "
                             f"got {progress!r}")
        if progress == "auto":
            progress = "thread" if getattr(self.comm, "thread_safe", False) else "hooks"
        self.progress, self.poll_interval = progress, poll_interval
        self._poller = None
        self.buckets = [_Bucket(i, b) for i, b in enumerate(
            _reverse_buckets(self.params, bucket_bytes, first_bucket_bytes))]
        self._where = {}
        for bucket in self.buckets:
            for p in bucket.params:
                self._where[id(p)] = bucket
        self._handles = [p.register_post_accumulate_grad_hook(self._ready)
                         for p in self.params if p.requires_grad]
        self._armed = False
        self._next = 0          # the next bucket to start: they start in order
        self.hidden_bytes = 0   # after finish(): bytes reduced before it was called
        self._seen = set()
        self.weight = None

    # -- one step ------------------------------------------------------------------------------
    def prepare(self, weight: float | None = None) -> None:
        """Arm the reducer for the next backward.  ``weight`` (this rank's share of the global
        batch) makes the result the weighted sum instead of the mean, as in
        :func:`average_gradients`."""
        if self._poller is not None:    # a step that ended in an exception
            self._poller.stop()
            self._poller = None
        for bucket in self.buckets:
            bucket.ready, bucket.flat, bucket.work, bucket.done_early = 0, None, None, False
        self._seen.clear()
        self._next = 0
        self.weight = weight
        self._armed = True

    def _ready(self, p) -> None:
        if not self._armed:
            return              # a backward outside prepare() / finish(): not ours
        if id(p) in self._seen:
            raise RuntimeError(
                "Reducer: a second backward between prepare() and finish() (parameter "
                f"{p!r} was ready twice); call finish() after each backward")
        self._seen.add(id(p))
        bucket = self._where[id(p)]
        bucket.ready += 1
        if bucket.ready == len(bucket.params):
            self._start_ready()
        elif self.progress == "hooks":
            self._test()

    def _start_ready(self) -> None:
        while (self._next < len(self.buckets)
               and self.buckets[self._next].ready == len(self.buckets[self._next].params)):
            self._start(self.buckets[self._next])
            self._next += 1
        if self.progress == "hooks":
            self._test()

    def _start(self, bucket) -> None:
        parts = [p.grad if p.grad is not None else B.get_array_module(p.data).zeros_like(p.data)
                 for p in bucket.params]
        xp = B.get_array_module(parts[0])
        flat = xp.concatenate([g.reshape(-1) for g in parts]) if len(parts) > 1 \
            else parts[0].reshape(-1).copy()
        if self.weight is not None:
            flat *= flat.dtype.type(self.weight)
        bucket.flat = flat
        bucket.work = self.comm.iallreduce_sum_(flat)
        if self.progress == "thread" and self._poller is None and not bucket.work.test():
            self._poller = _Poller(self.buckets, self.poll_interval)

    def _test(self) -> None:
        for bucket in self.buckets[:self._next]:
            if bucket.work is not None and bucket.work.test():
                bucket.work.wait()       # done: cheap, and no request left to poll
                bucket.work, bucket.done_early = None, True

    def finish(self) -> None:
        """Start the buckets still waiting (in order), wait for all, and set every parameter's
        ``.grad`` to its slice of the averaged bucket."""
        if not self._armed:
            raise RuntimeError("Reducer.finish() without prepare()")
        self._armed = False
        # what overlapped: bytes whose allreduce had completed when backward returned
        self.hidden_bytes = sum(b.flat.nbytes for b in self.buckets if b.done_early)
        while self._next < len(self.buckets):
            self._start(self.buckets[self._next])
            self._next += 1
        if self._poller is not None:    # no two threads may touch one MPI request at once
            self._poller.stop()
            self._poller = None
        scale = None if self.weight is not None else 1.0 / self.comm.size
        for bucket in self.buckets:
            if bucket.work is not None:
                bucket.work.wait()
            flat = bucket.flat
            if scale is not None:
                flat *= flat.dtype.type(scale)
            offset = 0
            for p in bucket.params:
                p.grad = flat[offset:offset + p.size].reshape(p.shape)
                offset += p.size
            bucket.flat = bucket.work = None

    def remove(self) -> None:
        """Unregister the hooks (the parameters go back to plain backward)."""
        if self._poller is not None:
            self._poller.stop()
            self._poller = None
        for h in self._handles:
            h.remove()
        self._handles = []
        self._armed = False

    def __repr__(self):
        sizes = [sum(p.data.nbytes for p in b.params) for b in self.buckets]
        return (f"Reducer({len(self.params)} parameters in {len(self.buckets)} buckets of "
                f"{sizes} bytes, {self.comm.name} over {self.comm.size} ranks)")


class _Poller:
    """A daemon thread that tests the started buckets' requests every ``interval`` seconds
    until :meth:`stop`.  ``stop`` does not wait for the thread to end (on a loaded machine
    that waited for the scheduler: 0.7 ms a step); a lock makes sure that once it returned
    the thread touches no request again, so the main thread may wait on them."""

    def __init__(self, buckets, interval):
        self.buckets, self.interval = buckets, interval
        self._lock, self._wake = threading.Lock(), threading.Event()
        self.stopped = False
        self.polls = 0
        self.thread = threading.Thread(target=self._run, name="minidl-reducer-progress",
                                       daemon=True)
        self.thread.start()

    def _run(self):
        done = set()
        while not self._wake.wait(self.interval):
            with self._lock:
                if self.stopped:
                    return
                for bucket in self.buckets:
                    work = bucket.work
                    if work is not None and id(work) not in done:
                        self.polls += 1
                        if work.test():
                            done.add(id(work))
                            bucket.done_early = True

    def stop(self):
        with self._lock:
            self.stopped = True
        self._wake.set()


def _reverse_buckets(params, bucket_bytes, first_bucket_bytes):
    """Lists of ``params`` in reverse order, grouped by (backend, dtype), each about
    ``bucket_bytes`` (the first of each group ``first_bucket_bytes``)."""
    groups = {}
    for p in reversed(params):
        groups.setdefault((B.backend_of(p.data).name, str(p.dtype)), []).append(p)
    out = []
    for members in groups.values():
        bucket, size, cap = [], 0, first_bucket_bytes
        for p in members:
            if bucket and size + p.data.nbytes > cap:
                out.append(bucket)
                bucket, size, cap = [], 0, bucket_bytes
            bucket.append(p)
            size += p.data.nbytes
        if bucket:
            out.append(bucket)
    return out

