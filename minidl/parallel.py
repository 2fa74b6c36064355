"""Host threads for the memory-bound ops: split the batch, run the halves side by side.

NumPy's BLAS already uses every core for matrix products, but an elementwise op, a pooling
window or a batch-norm sum runs on one core, and on a small CNN those are half of a training
step.  NumPy releases the GIL inside such loops, so the same op on the two halves of a batch in
two Python threads takes about 0.6 of the time on a 2-core CPU.  :func:`parallel_for` does
exactly that, for the ops that ask for it (ReLU, max pooling, batch norm, the convolution's
copies).

Only NumPy arrays are split; CuPy (one kernel already uses the whole GPU) and the strict test
backend run the work in one piece, as do arrays too small to be worth a thread hand-off.
Elementwise results are bitwise the same with any number of threads; reductions (batch-norm
sums) add their per-part sums at the end, so they can differ in the last bits.

Threads: ``MINIDL_NUM_THREADS`` or :func:`set_num_threads`, default the number of CPUs
(at most 8).

OpenBLAS (NumPy's BLAS on Linux and Windows) keeps its worker threads spinning for about 0.1 s
after each matrix product, so in a training step they would still hold the cores when the
elementwise ops start; ``import minidl`` shortens that spin (:mod:`minidl._openblas`).
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

from minidl import backend as B

__all__ = ["parallel_for", "chunks_side_by_side", "even_chunk_size", "sum_in_order",
           "get_num_threads", "set_num_threads", "MIN_BYTES"]

MIN_BYTES = 1 << 20  # below this much data per call, one thread is faster than a hand-off

_num_threads: int | None = None
_pool: ThreadPoolExecutor | None = None
_pool_pid = None  # a forked child has no worker threads: it starts its own pool
_pool_lock = threading.Lock()
_local = threading.local()  # marks worker threads: work they submit runs inline


def _default_threads() -> int:
    env = os.environ.get("MINIDL_NUM_THREADS")
    if env is not None:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"MINIDL_NUM_THREADS must be a positive int, got {env!r}") from None
        if n < 1:
            raise ValueError(f"MINIDL_NUM_THREADS must be a positive int, got {env!r}")
        return n
    return max(1, min(8, os.cpu_count() or 1))


def get_num_threads() -> int:
    """Threads :func:`parallel_for` uses (including the calling one)."""
    global _num_threads
    if _num_threads is None:
        _num_threads = _default_threads()
    return _num_threads


def set_num_threads(n: int) -> None:
    """Use ``n`` >= 1 threads from now on (1: everything runs in the calling thread)."""
    global _num_threads, _pool
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive int, got {n!r}")
    with _pool_lock:
        _num_threads = n
        if _pool is not None:
            _pool.shutdown(wait=True)
            _pool = None


def _get_pool(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_pid
    with _pool_lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool_pid = os.getpid()
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="minidl",
                                       initializer=_mark_worker)
        return _pool


def _mark_worker():
    _local.worker = True


def parallel_for(n: int, work, *, nbytes: int = 0, like=None) -> None:
    """Call ``work(lo, hi)`` on contiguous parts of ``range(n)`` that together cover it once.

    The parts run in worker threads and the calling thread when ``like`` (an array the work
    is on) is a NumPy array, ``nbytes`` (the data the call touches) is at least
    :data:`MIN_BYTES` and more than one thread is configured; otherwise ``work(0, n)`` runs
    right here.  ``work`` must write disjoint parts of its outputs.  The first exception a
    part raises is re-raised after all parts finish.  A ``parallel_for`` called from inside a
    part (any part, the caller's included) runs inline in that part's thread.
    """
    threads = get_num_threads()
    parts = min(threads, n)
    if (parts <= 1 or nbytes < MIN_BYTES or getattr(_local, "worker", False)
            or (like is not None and B.backend_of(like).name != "numpy")):
        work(0, n)
        return
    bounds = [n * i // parts for i in range(parts + 1)]
    pool = _get_pool(threads - 1)
    futures = [pool.submit(work, bounds[i], bounds[i + 1]) for i in range(1, parts)]
    error = None
    _local.worker = True  # a parallel_for inside the caller's own part runs inline too
    try:
        work(bounds[0], bounds[1])
    except BaseException as exc:  # noqa: BLE001 - re-raised below, after the workers finish
        error = exc
    finally:
        _local.worker = False
    for f in futures:
        try:
            f.result()
        except BaseException as exc:  # noqa: BLE001
            error = error or exc
    if error is not None:
        raise error


def chunks_side_by_side(count: int, work, *, nbytes: int = 0, like=None) -> None:
    """Call ``work(k)`` for k in ``range(count)`` -- chunks of a batch that need no data from
    each other.  On a multi-core CPU (the same conditions as :func:`parallel_for`) the chunks
    run side by side, each thread taking a run of whole chunks, with NumPy's BLAS on one
    thread each (:func:`minidl._openblas.one_thread_each`): every step of a chunk stays in its
    thread (a ``parallel_for`` inside runs inline) and its data in that core's cache, with no
    hand-off between the steps.  Otherwise, or when BLAS cannot be told, the chunks run one
    after the other here, each free to use the threads inside."""
    from minidl._openblas import one_thread_each

    def run(lo, hi):
        for k in range(lo, hi):
            work(k)

    if (count > 1 and get_num_threads() > 1 and nbytes >= MIN_BYTES
            and not getattr(_local, "worker", False)
            and (like is None or B.backend_of(like).name == "numpy")):
        with one_thread_each() as told:
            if told:
                parallel_for(count, run, nbytes=nbytes, like=like)
                return
    run(0, count)


def even_chunk_size(n: int, most: int) -> int:
    """Items per chunk for ``n`` items in chunks of at most ``most``, with a chunk count that
    is a multiple of the threads (whole chunks per thread in :func:`chunks_side_by_side`) and
    chunks as equal as can be (no small last one)."""
    threads = get_num_threads()
    count = -(-n // max(1, most))
    count = min(n, -(-count // threads) * threads)
    return -(-n // count)


def sum_in_order(parts):
    """``parts[0] + parts[1] + ...``, added in that order into ``parts[0]``: per-chunk sums
    made side by side add up to the same total from run to run."""
    total = parts[0]
    for part in parts[1:]:
        total += part
    return total

