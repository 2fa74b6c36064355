"""Collectives on arrays of any backend: the communicator abstraction and the bucketed
allreduce.

A :class:`Communicator` sums or broadcasts one flat, contiguous 1-D buffer in place:

- :class:`SingleCommunicator`: the one-process world; nothing to do.
- :class:`MPICommunicator`: mpi4py's buffer methods (``Allreduce`` with ``MPI.IN_PLACE``,
  ``Bcast``) on host memory; device arrays (CuPy, the strict stand-in) are staged through a
  host copy (a CUDA-aware MPI could take them directly, but plain MPI cannot).
- :class:`NCCLCommunicator`: NCCL between GPUs (``cupy.cuda.nccl``), its unique id made on
  rank 0 and broadcast over MPI; buffers never leave the device.

:func:`allreduce_mean_` packs many arrays (a model's gradients) into buckets of about
``bucket_bytes`` (PyTorch DDP's 25 MB) of one dtype, reduces each bucket with one call, and
unpacks the averages back in place: a few large messages instead of one per parameter, the
latency paid once per bucket.

``Communicator.iallreduce_sum_`` starts the same sum without waiting and returns a
:class:`Work` whose ``wait()`` completes it: MPI ``Iallreduce`` on the (host) buffer, NCCL on
a side stream; minidl.distributed.reducer starts them while backward still runs.
"""
from __future__ import annotations

from minidl import backend as B
from minidl.distributed import world

__all__ = ["Communicator", "Work", "SingleCommunicator", "MPICommunicator", "NCCLCommunicator",
           "get_communicator", "set_communicator", "allreduce_mean_", "allreduce_sum_",
           "broadcast_", "BUCKET_BYTES"]

BUCKET_BYTES = 25 * 2**20   # PyTorch DDP's default bucket: big enough to amortise latency


class Communicator:
    """Sum / broadcast a flat contiguous 1-D array in place across ``size`` ranks."""

    rank = 0
    size = 1
    name = "base"

    def allreduce_sum_(self, buf) -> None:
        raise NotImplementedError

    def broadcast_(self, buf, root: int = 0) -> None:
        raise NotImplementedError

    def iallreduce_sum_(self, buf) -> "Work":
        """Start summing ``buf`` in place; the sum is there once the returned Work's
        ``wait()`` returned.  This default is blocking (a finished Work): communicators that
        can overlap override it.  Every rank must start its nonblocking sums in the same
        order."""
        self.allreduce_sum_(buf)
        return Work()


class Work:
    """A collective started without waiting: ``test()`` says (and advances) whether it is
    done, ``wait()`` completes it.  This base is one that finished when it started."""

    def test(self) -> bool:
        return True

    def wait(self) -> None:
        pass


class _MPIWork(Work):
    """An MPI request (``Iallreduce``), with the host copy to write back to a device array."""

    def __init__(self, request, host, buf):
        self.request, self.host, self.buf = request, host, buf

    def test(self) -> bool:
        # MPICH progresses a nonblocking collective only inside MPI calls: a test is one
        return self.request is None or self.request.Test()

    def wait(self) -> None:
        if self.request is None:
            return
        self.request.Wait()
        self.request = None
        if self.host is not self.buf:   # staged: the device array takes the host sum
            self.buf[...] = B.to_device(self.host, B.backend_of(self.buf).name)
        self.host = self.buf = None


class _EventWork(Work):
    """NCCL on a side stream: ``wait()`` makes the current stream wait for its event (the GPU
    waits, the host does not), so whatever is enqueued next sees the sum."""

    def __init__(self, event, keep):
        self.event, self.keep = event, keep   # keep: the buffer, alive until then

    def test(self) -> bool:
        return self.event.done

    def wait(self) -> None:
        import cupy
        cupy.cuda.get_current_stream().wait_event(self.event)
        self.keep = None


class SingleCommunicator(Communicator):
    """The one-process world: a sum over one rank is the array itself."""

    name = "single"

    def allreduce_sum_(self, buf) -> None:
        pass

    def broadcast_(self, buf, root: int = 0) -> None:
        pass


class MPICommunicator(Communicator):
    """MPI through mpi4py's buffer (capitalised) methods; device arrays go through the host.

    Parameters
    ----------
    comm : an ``mpi4py.MPI.Comm`` (``COMM_WORLD`` by default, after ``world.init()``).
    """

    name = "mpi"

    def __init__(self, comm=None):
        self.comm = world.mpi_comm() if comm is None else comm
        if self.comm is None:
            raise RuntimeError("MPICommunicator: not running under MPI (world size 1); use "
                               "SingleCommunicator")
        from mpi4py import MPI
        self.MPI = MPI
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        # another thread may test requests (the reducer's progress thread)
        self.thread_safe = MPI.Query_thread() == MPI.THREAD_MULTIPLE

    def _staged(self, buf, op):
        """Run ``op(host_array)`` on ``buf`` itself (NumPy) or on a host copy written back."""
        if B.backend_of(buf).name == "numpy":
            op(buf)
            return
        host = B.to_host(buf)       # device -> host staging (plain MPI cannot read GPU memory)
        op(host)
        buf[...] = B.to_device(host, B.backend_of(buf).name)

    def allreduce_sum_(self, buf) -> None:
        self._staged(buf, lambda h: self.comm.Allreduce(self.MPI.IN_PLACE, h, op=self.MPI.SUM))

    def broadcast_(self, buf, root: int = 0) -> None:
        self._staged(buf, lambda h: self.comm.Bcast(h, root=root))

    def iallreduce_sum_(self, buf) -> Work:
        """``Iallreduce(MPI.IN_PLACE, ...)`` on ``buf`` (NumPy) or on a host copy of it (device
        arrays: copied now, written back by ``wait()``)."""
        host = buf if B.backend_of(buf).name == "numpy" else B.to_host(buf)
        request = self.comm.Iallreduce(self.MPI.IN_PLACE, host, op=self.MPI.SUM)
        return _MPIWork(request, host, buf)


class NCCLCommunicator(Communicator):
    """NCCL between the GPUs of all ranks (one GPU per rank), set up over MPI.

    Parameters
    ----------
    nccl : the NCCL binding, ``cupy.cuda.nccl`` by default (tests pass a fake with the same
        API: ``get_unique_id()``, ``NcclCommunicator(nranks, uid, rank)`` whose
        ``allReduce(send, recv, count, dtype, op, stream)`` and ``bcast(buf, count, dtype,
        root, stream)`` take device pointers, and the ``NCCL_*`` constants).
    comm : the mpi4py communicator that carries the unique id from rank 0.
    pointer : array -> device address (``a.data.ptr`` for CuPy).
    stream : () -> the stream handle to enqueue on (CuPy's current stream).
    """

    name = "nccl"

    def __init__(self, nccl=None, comm=None, pointer=None, stream=None):
        if nccl is None:
            from cupy.cuda import nccl
        comm = world.mpi_comm() if comm is None else comm
        if comm is None:
            raise RuntimeError("NCCLCommunicator: not running under MPI (world size 1)")
        self.nccl = nccl
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        uid = nccl.get_unique_id() if self.rank == 0 else None
        uid = comm.bcast(uid, root=0)   # 128 bytes, once: the lower-case (pickled) bcast is fine
        self.comm = nccl.NcclCommunicator(self.size, uid, self.rank)
        self.pointer = pointer or (lambda a: a.data.ptr)
        self.stream = stream or _cupy_stream
        self._dtypes = {"float32": nccl.NCCL_FLOAT32, "float64": nccl.NCCL_FLOAT64,
                        "float16": nccl.NCCL_FLOAT16, "int32": nccl.NCCL_INT32,
                        "int64": nccl.NCCL_INT64}

    def _dtype(self, buf):
        try:
            return self._dtypes[str(buf.dtype)]
        except KeyError:
            raise TypeError(f"NCCLCommunicator: dtype must be one of {sorted(self._dtypes)}, "
                            f"got {buf.dtype}") from None

    def allreduce_sum_(self, buf) -> None:
        ptr = self.pointer(buf)
        self.comm.allReduce(ptr, ptr, buf.size, self._dtype(buf), self.nccl.NCCL_SUM,
                            self.stream())

    def broadcast_(self, buf, root: int = 0) -> None:
        self.comm.bcast(self.pointer(buf), buf.size, self._dtype(buf), root, self.stream())

    def iallreduce_sum_(self, buf) -> Work:
        """On CuPy's streams: the allreduce is enqueued on a side stream after an event of the
        current one (the gradients in ``buf`` are written there), so backward's kernels go on
        while NCCL runs; ``wait()`` makes the current stream wait for it.  With a caller's
        ``stream`` (tests: a fake NCCL) it is enqueued there, in order, like
        :meth:`allreduce_sum_`."""
        if self.stream is not _cupy_stream:
            self.allreduce_sum_(buf)
            return Work()
        import cupy
        if getattr(self, "_side", None) is None:
            self._side = cupy.cuda.Stream(non_blocking=True)
        self._side.wait_event(cupy.cuda.get_current_stream().record())
        ptr = self.pointer(buf)
        self.comm.allReduce(ptr, ptr, buf.size, self._dtype(buf), self.nccl.NCCL_SUM,
                            self._side.ptr)
        return _EventWork(self._side.record(), buf)


def _cupy_stream():
    import cupy
    return cupy.cuda.get_current_stream().ptr


_active = {}


def get_communicator(array=None) -> Communicator:
    """The communicator for arrays like ``array``: NCCL for CuPy arrays when
    ``cupy.cuda.nccl`` is available, else MPI (host staging for device arrays), or the
    one-process communicator outside MPI.  Chosen once per kind and kept."""
    if world.world_size() == 1:
        return _active.setdefault("single", SingleCommunicator())
    kind = "device" if array is not None and B.backend_of(array).name == "cupy" else "host"
    if kind not in _active:
        if kind == "device" and _nccl_available():
            _active[kind] = NCCLCommunicator()
        else:
            _active[kind] = _active.get("host") or MPICommunicator()
    return _active[kind]


def set_communicator(comm: Communicator | None, kind: str = "device") -> None:
    """Use ``comm`` for ``kind`` ("device" or "host") arrays from now on (None: choose again).
    Tests install a :class:`NCCLCommunicator` over a fake NCCL this way."""
    if kind not in ("device", "host"):
        raise ValueError(f"set_communicator: kind must be 'device' or 'host', got {kind!r}")
    if comm is None:
        _active.pop(kind, None)
    else:
        _active[kind] = comm


def _nccl_available() -> bool:
    try:
        from cupy.cuda import nccl
        return bool(getattr(nccl, "available", True))
    except ImportError:
        return False


def _buckets(arrays, bucket_bytes):
    """Group indices of ``arrays`` by (backend, dtype), in order, into runs of about
    ``bucket_bytes`` (a single array larger than that is a bucket of its own)."""
    groups = {}
    for i, a in enumerate(arrays):
        groups.setdefault((B.backend_of(a).name, str(a.dtype)), []).append(i)
    for indices in groups.values():
        bucket, size = [], 0
        for i in indices:
            if bucket and size + arrays[i].nbytes > bucket_bytes:
                yield bucket
                bucket, size = [], 0
            bucket.append(i)
            size += arrays[i].nbytes
        if bucket:
            yield bucket


def _reduce_buckets(arrays, scale, comm, bucket_bytes, op):
    arrays = list(arrays)
    for bucket in _buckets(arrays, bucket_bytes):
        parts = [arrays[i] for i in bucket]
        xp = B.get_array_module(parts[0])
        flat = xp.concatenate([p.reshape(-1) for p in parts]) if len(parts) > 1 \
            else parts[0].reshape(-1).copy()
        op(comm or get_communicator(parts[0]), flat)
        if scale is not None:
            flat *= flat.dtype.type(scale)
        offset = 0
        for p in parts:   # write the result back into the caller's arrays, in place
            p[...] = flat[offset:offset + p.size].reshape(p.shape)
            offset += p.size


def allreduce_sum_(arrays, comm: Communicator | None = None,
                   bucket_bytes: int = BUCKET_BYTES) -> None:
    """Replace every array in ``arrays`` (any shapes, dtypes, one backend per array) by its
    sum over all ranks, in place, in buckets of flat buffers."""
    if world.world_size() == 1 and comm is None:
        return
    _reduce_buckets(arrays, None, comm, bucket_bytes, lambda c, f: c.allreduce_sum_(f))


def allreduce_mean_(arrays, comm: Communicator | None = None,
                    bucket_bytes: int = BUCKET_BYTES) -> None:
    """Replace every float array in ``arrays`` by its mean over all ranks, in place (sum in
    buckets of flat buffers, then one multiply by 1/size per bucket)."""
    if world.world_size() == 1 and comm is None:
        return
    size = (comm or get_communicator()).size
    _reduce_buckets(arrays, 1.0 / size, comm, bucket_bytes,
                    lambda c, f: c.allreduce_sum_(f))


def broadcast_(arrays, root: int = 0, comm: Communicator | None = None,
               bucket_bytes: int = BUCKET_BYTES) -> None:
    """Overwrite every array in ``arrays`` with rank ``root``'s, in place."""
    if world.world_size() == 1 and comm is None:
        return
    _reduce_buckets(arrays, None, comm, bucket_bytes, lambda c, f: c.broadcast_(f, root))
