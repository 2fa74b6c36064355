"""minidl.distributed.Reducer in one process, over a communicator that plays a second rank:
buckets in reverse order, started during backward (in order), the same result as the
blocking average_gradients bit for bit, zeros for parameters without a gradient, misuse
named.  The real 2-rank runs are in test_distributed.py."""
import threading
import time

import numpy as np
import pytest

import minidl
from minidl import distributed
from minidl import functions as F
from minidl import layers as L
from minidl.distributed import Communicator, Reducer, Work


class PlaysRankTwo(Communicator):
    """size 2; "the other rank" holds 0.5 * g + 1 wherever this one holds g (an elementwise
    function, so any bucketing sums the same numbers).  Nonblocking sums land at ``wait()``;
    ``log`` records each start with the gradients already present at that moment."""

    size, name = 2, "plays-rank-two"

    def __init__(self, model=None):
        self.model, self.log, self.tests = model, [], 0

    def allreduce_sum_(self, buf):
        buf[...] = buf + (buf * buf.dtype.type(0.5) + buf.dtype.type(1))

    def iallreduce_sum_(self, buf):
        have = None if self.model is None else \
            [p.grad is not None for p in self.model.parameters()]
        self.log.append((buf.size, have))
        comm = self

        class Later(Work):
            def test(self):
                comm.tests += 1
                return False

            def wait(self):
                comm.allreduce_sum_(buf)
        return Later()


def mlp():
    return L.Sequential(L.Linear(6, 16), L.ReLU(), L.Linear(16, 16), L.Tanh(),
                        L.Linear(16, 3))


def step(model, x, y, reducer=None, weight=None):
    for p in model.parameters():
        p.grad = None
    if reducer is not None:
        reducer.prepare(weight)
    F.softmax_cross_entropy(model(x), y).backward()
    if reducer is not None:
        reducer.finish()
    return [minidl.to_host(p.grad).copy() for p in model.parameters()]


@pytest.mark.parametrize("weight", [None, 0.375])
def test_overlapped_equals_blocking_bit_for_bit(backend, rng, weight):
    minidl.set_default_dtype(np.float64)
    model = mlp()
    x = minidl.tensor(rng.standard_normal((8, 6)))
    y = minidl.to_device(np.arange(8) % 3)
    step(model, x, y)
    distributed.average_gradients(model.parameters(), weight, comm=PlaysRankTwo(),
                                  bucket_bytes=512)
    blocking = [minidl.to_host(p.grad).copy() for p in model.parameters()]
    comm = PlaysRankTwo(model)
    reducer = Reducer(model.parameters(), comm=comm, bucket_bytes=512, first_bucket_bytes=256)
    overlapped = step(model, x, y, reducer, weight)
    assert len(comm.log) == len(reducer.buckets) > 2
    for a, b in zip(blocking, overlapped):
        np.testing.assert_array_equal(a, b)
    # not a no-op: the "other rank" changed every gradient
    alone = step(model, x, y)
    assert all(not np.array_equal(a, b) for a, b in zip(alone, overlapped))


def test_buckets_run_backwards_and_start_while_backward_still_runs(rng):
    model = mlp()
    # float32: 16x6+16 = 448 B, 16x16+16 = 1088 B, 16x3+3 = 204 B per layer
    comm = PlaysRankTwo(model)
    reducer = Reducer(model.parameters(), comm=comm, bucket_bytes=1100,
                      first_bucket_bytes=300)
    name = {id(p): n for n, p in model.named_parameters()}
    assert [[name[id(p)] for p in b.params] for b in reducer.buckets] == \
        [["4.b", "4.W", "2.b"], ["2.W", "0.b"], ["0.W"]]
    step(model, minidl.tensor(rng.standard_normal((4, 6))), minidl.to_device(np.arange(4) % 3),
         reducer)
    sizes = [size for size, _ in comm.log]
    assert sizes == [67, 272, 96]
    # when the last layer's bucket started, the first layer had no gradient yet: overlap
    first_start = comm.log[0][1]
    assert first_start[-1] and first_start[-2] and not first_start[0]
    assert comm.tests > 0           # later hooks polled the started allreduces (MPI progress)
    assert "3 buckets of [268, 1088, 384] bytes" in repr(reducer)


def test_a_parameter_without_gradient_contributes_zeros_and_its_bucket_still_starts(rng):
    model = L.Sequential(L.Linear(4, 4), L.Linear(4, 2))
    unused = L.Linear(4, 4)                        # in the optimizer, not in the graph
    params = model.parameters() + unused.parameters()
    comm = PlaysRankTwo()
    reducer = Reducer(params, comm=comm, bucket_bytes=64, first_bucket_bytes=64)
    reducer.prepare()
    F.softmax_cross_entropy(model(minidl.tensor(rng.standard_normal((3, 4)))),
                            minidl.to_device(np.array([0, 1, 1]))).backward()
    started_in_backward = len(comm.log)
    reducer.finish()
    assert started_in_backward == 0    # the unused layer's bucket comes first: all wait
    assert len(comm.log) == len(reducer.buckets)
    for p in unused.parameters():      # (0 + (0.5 * 0 + 1)) / 2 on "both ranks"
        np.testing.assert_array_equal(minidl.to_host(p.grad), np.full(p.shape, 0.5))


def test_a_layer_called_twice_is_reduced_once_with_both_contributions(rng):
    minidl.set_default_dtype(np.float64)
    shared, head = L.Linear(4, 4), L.Linear(4, 2)
    params = shared.parameters() + head.parameters()
    x = minidl.tensor(rng.standard_normal((5, 4)))
    y = minidl.to_device(np.array([0, 1, 0, 1, 1]))

    def loss():
        return F.softmax_cross_entropy(head(F.tanh(shared(F.tanh(shared(x))))), y)
    loss().backward()
    distributed.average_gradients(params, comm=PlaysRankTwo())
    blocking = [minidl.to_host(p.grad).copy() for p in params]
    for p in params:
        p.grad = None
    reducer = Reducer(params, comm=PlaysRankTwo(), first_bucket_bytes=8, bucket_bytes=8)
    reducer.prepare()
    loss().backward()
    reducer.finish()
    for a, p in zip(blocking, params):
        np.testing.assert_array_equal(a, minidl.to_host(p.grad))


def test_misuse_is_named_and_remove_detaches(rng):
    model = mlp()
    comm = PlaysRankTwo()
    with pytest.raises(ValueError, match="params is empty"):
        Reducer([], comm=comm)
    with pytest.raises(ValueError, match="bucket_bytes must be a positive int, got 0"):
        Reducer(model.parameters(), comm=comm, bucket_bytes=0)
    reducer = Reducer(model.parameters(), comm=comm)
    with pytest.raises(RuntimeError, match=r"finish\(\) without prepare\(\)"):
        reducer.finish()
    x, y = minidl.tensor(rng.standard_normal((2, 6))), minidl.to_device(np.array([0, 2]))
    F.softmax_cross_entropy(model(x), y).backward()     # not armed: nothing starts
    assert comm.log == []
    reducer.prepare()
    F.softmax_cross_entropy(model(x), y).backward()
    with pytest.raises(RuntimeError, match="a second backward between prepare"):
        F.softmax_cross_entropy(model(x), y).backward()
    reducer.remove()
    reducer.prepare()
    F.softmax_cross_entropy(model(x), y).backward()     # hooks gone
    assert len(comm.log) == 1       # only the first armed backward's first bucket


class PolledRankTwo(PlaysRankTwo):
    """Its sums complete after three tests from any thread; records which threads tested."""

    thread_safe = True

    def iallreduce_sum_(self, buf):
        comm = self

        class Polled(Work):
            tests = 0

            def test(self):
                comm.log.append(threading.current_thread().name)
                self.tests += 1
                return self.tests > 3

            def wait(self):
                assert self.tests > 3 or threading.current_thread() is threading.main_thread()
                comm.allreduce_sum_(buf)
        return Polled()


def test_a_progress_thread_polls_started_buckets_until_finish(rng):
    model = mlp()
    comm = PolledRankTwo()
    reducer = Reducer(model.parameters(), comm=comm, first_bucket_bytes=256,
                      poll_interval=1e-4)
    assert reducer.progress == "thread"          # "auto" with a thread-safe communicator
    reducer.prepare()
    F.softmax_cross_entropy(model(minidl.tensor(rng.standard_normal((4, 6)))),
                            minidl.to_device(np.arange(4) % 3)).backward()
    poller = reducer._poller
    assert poller is not None and poller.thread.is_alive()
    deadline = time.monotonic() + 10
    while poller.polls < 4 and time.monotonic() < deadline:
        time.sleep(1e-3)
    reducer.finish()
    assert poller.stopped and reducer._poller is None
    poller.thread.join(10)
    assert not poller.thread.is_alive()
    assert "minidl-reducer-progress" in comm.log
    with pytest.raises(ValueError, match="progress must be 'auto', 'thread', 'hooks' or None"):
        Reducer(model.parameters(), comm=comm, progress="mpi")
