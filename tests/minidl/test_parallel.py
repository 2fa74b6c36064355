"""minidl.parallel: ops split over host threads give the serial results (elementwise ops
bitwise, batch-norm sums to rounding), errors come back, other backends run in one piece."""
import numpy as np
import pytest

from minidl import backend as B
from minidl import parallel
from minidl.autograd import Tensor
from minidl.functions import batch_norm, conv2d, max_pool2d, relu


@pytest.fixture
def threads(monkeypatch):
    """Split every call (no size threshold) over ``n`` threads."""
    monkeypatch.setattr(parallel, "MIN_BYTES", 0)
    yield lambda n: parallel.set_num_threads(n)
    parallel.set_num_threads(parallel._default_threads())


def _run(op, arrays, seed_grad):
    ts = [Tensor(a.copy(), requires_grad=True) for a in arrays]
    y = op(*ts)
    y.backward(seed_grad(y.shape))
    return [y.data] + [t.grad for t in ts]


OPS = {
    "relu": (relu, [(7, 3, 5, 4)]),
    "max_pool 2x2": (lambda x: max_pool2d(x, 2), [(7, 3, 6, 8)]),
    "max_pool 3x3 s2 pad 1": (lambda x: max_pool2d(x, 3, 2, 1), [(7, 3, 9, 8)]),
    "batch_norm": (lambda x, g, b: batch_norm(x, None, None, g, b, training=True),
                   [(7, 3, 5, 4), (3,), (3,)]),
    "conv2d": (lambda x, w: conv2d(x, w, padding=1), [(7, 3, 6, 5), (4, 3, 3, 3)]),
    "conv2d stride 2": (lambda x, w: conv2d(x, w, stride=2, padding=1),
                        [(5, 4, 9, 8), (6, 4, 3, 3)]),
    "conv2d groups, dilation": (lambda x, w: conv2d(x, w, padding=2, dilation=2, groups=2),
                                [(5, 4, 9, 8), (6, 2, 3, 3)]),
    "conv2d one channel": (lambda x, w: conv2d(x, w, padding=1), [(5, 1, 6, 7), (3, 1, 3, 3)]),
}


@pytest.mark.parametrize("name", OPS)
@pytest.mark.parametrize("n", [2, 3])
def test_threads_give_the_serial_results(threads, rng, name, n):
    op, shapes = OPS[name]
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    if name.startswith("max_pool"):
        arrays[0] = np.maximum(arrays[0], 0)  # ties among zeros: first-max routing
    g = rng.standard_normal((64,)).astype(np.float32)

    def seed_grad(shape):
        return np.resize(g, shape)

    threads(1)
    serial = _run(op, arrays, seed_grad)
    threads(n)
    split = _run(op, arrays, seed_grad)
    for a, b in zip(serial, split):
        if name == "batch_norm":
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
        else:
            np.testing.assert_array_equal(b, a)


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("path", ["winograd", "winograd 5x5", "winograd 5x5 stride 2",
                                  "im2col stride 2", "im2col wide rows"])
def test_conv_chunks_side_by_side_give_the_serial_results(threads, rng, monkeypatch, n, path):
    """conv2d runs whole chunks of images per thread (BLAS on one thread each) and adds their
    weight and bias gradients in chunk order: the same values as one thread, to BLAS's
    rounding, for Winograd (3x3, and 5x5 as stacked 3x3 pieces) and for im2col."""
    from minidl.kernels import tuning
    winograd = path.startswith("winograd")
    with tuning.override(
        WINOGRAD_MIN_DEPTH=0 if winograd else np.inf, CONV_PER_IMAGE_MAX_MACS=0,
        WINOGRAD_MAX_WASTE=np.inf,  # odd sizes
        CONV_WIDE_MAX_WASTE=np.inf if "wide" in path else -1,
        WINOGRAD_CHUNK_BYTES=1, WINOGRAD_MIN_CHUNK_IMAGES=1,  # one image per chunk
        CONV_CHUNK_BYTES=1, CONV_RUNS_CHUNK_BYTES=1):
        stride = 2 if "stride 2" in path else 1
        k = 5 if "5x5" in path else 3
        arrays = [rng.standard_normal(s).astype(np.float32)
                  for s in [(7, 6, 9, 8), (5, 6, k, k), (5,)]]
        g = rng.standard_normal((64,)).astype(np.float32)

        def op(x, w, b):
            y = conv2d(x, w, b, stride=stride, padding=k // 2)
            assert y.creator.kernel.name.startswith("winograd") == winograd
            impl = y.creator.impl
            chunks = impl.tiles.chunks if winograd else impl.layout.chunks()
            assert len(chunks) == 7
            return y

        threads(1)
        serial = _run(op, arrays, lambda shape: np.resize(g, shape))
        threads(n)
        split = _run(op, arrays, lambda shape: np.resize(g, shape))
        for a, b in zip(serial, split):
            np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-6)


def test_parts_cover_the_range_once_and_errors_come_back(threads):
    threads(3)
    seen = np.zeros(10, int)

    def work(lo, hi):
        seen[lo:hi] += 1

    parallel.parallel_for(10, work, nbytes=1 << 30)
    assert (seen == 1).all()

    def fail(lo, hi):
        if lo > 0:
            raise KeyError("part failed")

    with pytest.raises(KeyError, match="part failed"):
        parallel.parallel_for(10, fail, nbytes=1 << 30)


def test_a_parallel_for_inside_any_part_runs_inline_in_that_parts_thread(threads):
    """Winograd runs whole chunks per thread, and its steps call parallel_for again: those
    inner calls must stay in their part's thread (the caller's part included), not queue
    behind the busy workers."""
    import threading
    threads(2)
    inner = []

    def work(lo, hi):
        outer = threading.get_ident()
        parallel.parallel_for(8, lambda a, b: inner.append((lo, a, b,
                                                            threading.get_ident() == outer)),
                              nbytes=1 << 30)

    parallel.parallel_for(2, work, nbytes=1 << 30)
    assert sorted(inner) == [(0, 0, 8, True), (1, 0, 8, True)]
    calls = []   # and after it, the caller splits its own calls again
    parallel.parallel_for(4, lambda lo, hi: calls.append((lo, hi)), nbytes=1 << 30)
    assert sorted(calls) == [(0, 2), (2, 4)]


def test_device_arrays_and_small_calls_run_in_one_piece(threads, backend):
    threads(4)
    calls = []
    a = B.to_device(np.zeros(4))
    parallel.parallel_for(8, lambda lo, hi: calls.append((lo, hi)), nbytes=1 << 30, like=a)
    expected = [(0, 2), (2, 4), (4, 6), (6, 8)] if backend.name == "numpy" else [(0, 8)]
    assert sorted(calls) == expected


def test_thread_count_is_validated(monkeypatch):
    with pytest.raises(ValueError, match="set_num_threads: n must be a positive int, got 0"):
        parallel.set_num_threads(0)
    monkeypatch.setenv("MINIDL_NUM_THREADS", "two")
    with pytest.raises(ValueError, match="MINIDL_NUM_THREADS must be a positive int, got 'two'"):
        parallel._default_threads()


def test_even_chunk_size_gives_whole_chunks_per_thread(threads):
    """At most ``most`` items per chunk, a chunk count that is a multiple of the threads, and
    chunks as equal as can be."""
    threads(2)
    assert parallel.even_chunk_size(128, 15) == 13   # 9 chunks -> 10, of 13 (the last 11)
    assert parallel.even_chunk_size(128, 35) == 32   # 4 chunks of 32
    assert parallel.even_chunk_size(128, 200) == 64  # one chunk -> 2, one per thread
    assert parallel.even_chunk_size(7, 1) == 1       # never more chunks than items
    threads(3)
    assert parallel.even_chunk_size(128, 35) == 22   # 4 -> 6 chunks
    threads(1)
    assert parallel.even_chunk_size(128, 35) == 32


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("path", ["winograd", "per image"])
def test_conv_batch_norm_pool_chunks_side_by_side_give_the_serial_results(threads, rng,
                                                                          monkeypatch, n, path):
    """conv2d_batch_norm_max_pool2d: each chunk's (Winograd) or block's (per image)
    statistics, winners and gradients made in its own thread, the statistics and sums merged
    in order: one thread's values to rounding, the running statistics included."""
    from minidl.functions import conv2d_batch_norm_max_pool2d
    from minidl.kernels import tuning
    winograd = path == "winograd"
    with tuning.override(
        WINOGRAD_MIN_DEPTH=0 if winograd else np.inf,
        CONV_PER_IMAGE_MAX_MACS=0 if winograd else 1 << 18,
        WINOGRAD_CHUNK_BYTES=1, WINOGRAD_MIN_CHUNK_IMAGES=1,  # one image per chunk or block
        FUSED_IMAGE_BLOCK_BYTES=1, FUSED_WINOGRAD_CHUNK_BYTES=1):
        arrays = [rng.standard_normal(s).astype(np.float32)
                  for s in [(7, 6, 8, 6), (5, 6, 3, 3), (5,), (5,)]]
        arrays[2][1] = -0.5       # a channel that pools the minimum
        g = rng.standard_normal((64,)).astype(np.float32)
        running = []

        def op(x, w, gamma, beta):
            stats = [np.zeros(5, np.float32), np.ones(5, np.float32)]
            running.append(stats)
            y = conv2d_batch_norm_max_pool2d(x, w, *stats, gamma, beta, training=True, relu=True)
            assert len(y.creator.run.chunks if winograd else y.creator.run.blocks) == 7
            return y

        threads(1)
        serial = _run(op, arrays, lambda shape: np.resize(g, shape)) + running.pop()
        threads(n)
        split = _run(op, arrays, lambda shape: np.resize(g, shape)) + running.pop()
        for a, b in zip(serial, split):
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5 * np.abs(a).max())
