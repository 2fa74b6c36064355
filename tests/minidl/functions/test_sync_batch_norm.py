"""minidl.functions.sync_batch_norm: in one process it is batch_norm with its reference passes
(bit for bit), float64 gradchecks, and ranks simulated by threads over an in-process
Communicator equal one process on the concatenated batch (the real 2-rank run under mpiexec
is in tests/minidl/test_distributed.py)."""
import threading

import numpy as np
import pytest

import minidl
from minidl import functions as F
from minidl import kernels
from minidl.autograd import Tensor
from minidl.distributed.comm import Communicator
from minidl.functions.sync_batch_norm import sync_batch_norm
from minidl.testing import gradcheck


def dev(xp, a, dtype=np.float64):
    return xp.asarray(np.asarray(a, dtype=dtype))


def host(a):
    return minidl.to_host(a.data if isinstance(a, Tensor) else a)


@pytest.fixture(autouse=True)
def _float64():
    minidl.set_default_dtype(np.float64)


class ThreadGroup:
    """``size`` ranks as threads of this process; rank r's Communicator sums by way of a
    shared table, in rank order (so every rank gets the same rounding)."""

    def __init__(self, size):
        self.size, self.parts = size, [None] * size
        self.barrier = threading.Barrier(size, timeout=20)

    def comm(self, rank):
        group = self

        class ThreadCommunicator(Communicator):
            name = "threads"

            def __init__(self):
                self.rank, self.size = rank, group.size

            def allreduce_sum_(self, buf):
                group.parts[rank] = buf.copy()
                group.barrier.wait()
                total = group.parts[0].copy()
                for part in group.parts[1:]:
                    total += part
                group.barrier.wait()          # nobody overwrites parts before all have read
                buf[...] = total

        return ThreadCommunicator()

    def run(self, fn):
        """fn(rank, comm) on every rank at once; their results in rank order."""
        results, errors = [None] * self.size, []

        def work(r):
            try:
                with kernels.force("batch_norm", "reference"):   # threads: own context
                    results[r] = fn(r, self.comm(r))
            except BaseException as exc:   # noqa: BLE001  (re-raised below, in the test)
                errors.append(exc)
                self.barrier.abort()

        threads = [threading.Thread(target=work, args=(r,)) for r in range(self.size)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        return results


SHAPES = [(8, 3), (6, 3, 5), (5, 3, 3, 2)]


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("training", [True, False])
def test_one_process_is_batch_norm_bit_for_bit(xp, rng, shape, training):
    C = shape[1]
    x = rng.standard_normal(shape) * 2 + 1
    gamma, beta, gy = rng.uniform(0.5, 2, C), rng.standard_normal(C), rng.standard_normal(shape)
    outs = []
    for op in (F.batch_norm, sync_batch_norm):
        ts = [Tensor(dev(xp, a), requires_grad=True) for a in (x, gamma, beta)]
        rm, rv = dev(xp, np.full(C, 0.5)), dev(xp, np.full(C, 2.0))
        with kernels.force("batch_norm", "reference"):
            y = op(ts[0], rm, rv, ts[1], ts[2], training=training)
            y.backward(dev(xp, gy))
        outs.append([host(y), host(rm), host(rv)] + [host(t.grad) for t in ts])
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_gradcheck_training_and_eval(xp, rng, shape):
    C = shape[1]
    x = rng.standard_normal(shape) * 2 + 1
    gamma, beta = rng.uniform(0.5, 2, C), rng.standard_normal(C)
    args = [dev(xp, x), dev(xp, gamma), dev(xp, beta)]
    gradcheck(lambda *t: sync_batch_norm(t[0], None, None, t[1], t[2], training=True), args)
    rm, rv = dev(xp, rng.standard_normal(C)), dev(xp, rng.uniform(0.5, 2, C))
    gradcheck(lambda *t: sync_batch_norm(t[0], rm, rv, t[1], t[2], training=False), args)
    gradcheck(lambda t: sync_batch_norm(t, training=True), [dev(xp, x)])


@pytest.mark.parametrize("shape,split", [((8, 3), (5, 3)), ((7, 4, 3, 2), (2, 4, 1))],
                         ids=str)
def test_ranks_equal_one_process_on_the_concatenated_batch(rng, shape, split):
    """Unequal shares (5 + 3 rows, 2 + 4 + 1 images): outputs, input gradients and running
    statistics are the one-process ones; gamma's and beta's gradients summed over the ranks
    (what gradient averaging does, times the world size) are the one-process ones."""
    C = shape[1]
    x = rng.standard_normal(shape) * 3 + 2
    gamma, beta, gy = rng.uniform(0.5, 2, C), rng.standard_normal(C), rng.standard_normal(shape)
    cuts = np.cumsum((0,) + split)

    def step(x, gy, comm):
        ts = [Tensor(a.copy(), requires_grad=True) for a in (x, gamma, beta)]
        rm, rv = np.full(C, 0.5), np.full(C, 2.0)
        y = sync_batch_norm(ts[0], rm, rv, ts[1], ts[2], training=True, momentum=0.3,
                            comm=comm)
        y.backward(gy)
        return y.data, ts[0].grad, ts[1].grad, ts[2].grad, rm, rv

    with kernels.force("batch_norm", "reference"):
        one = step(x, gy, None)
    ranks = ThreadGroup(len(split)).run(
        lambda r, comm: step(x[cuts[r]:cuts[r + 1]], gy[cuts[r]:cuts[r + 1]], comm))
    for k, name in ((0, "y"), (1, "gx")):
        np.testing.assert_allclose(np.concatenate([p[k] for p in ranks]), one[k], rtol=1e-13,
                                   atol=1e-13, err_msg=name)
    for k, name in ((2, "ggamma"), (3, "gbeta")):
        np.testing.assert_allclose(sum(p[k] for p in ranks), one[k], rtol=1e-13, err_msg=name)
    for p in ranks:
        for k, name in ((4, "running_mean"), (5, "running_var")):
            np.testing.assert_allclose(p[k], one[k], rtol=1e-14, err_msg=name)
    # not what per-rank statistics give: the test would notice a missing allreduce
    local = F.batch_norm(x[:split[0]], None, None, gamma, beta, training=True).data
    assert np.abs(local - one[0][:split[0]]).max() > 1e-3


def test_errors_name_the_function_and_argument(rng):
    with pytest.raises(ValueError, match=r"sync_batch_norm: training needs more than one "
                                         r"value per channel, got input shape \(1, 3\)"):
        sync_batch_norm(np.zeros((1, 3)), training=True)
    with pytest.raises(ValueError, match=r"sync_batch_norm: running_mean is required"):
        sync_batch_norm(np.zeros((4, 3)), training=False)
