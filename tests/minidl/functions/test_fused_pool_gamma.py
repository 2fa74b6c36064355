"""The fused batch norm -> (ReLU) -> 2x2 max pool ops with gamma <= 0 against the unfused ops and
PyTorch (issue 21 item 7).  The fused ops pool before batch norm's map; gamma < 0 reverses the
order (they pool the minimum), and gamma == 0 makes every value of a window the same, beta: the
unfused pooling then gives the window's gradient to its first element, and so must the fused
ops (they used to route it to the largest input: d gamma 0.4438 against 0.2829)."""
from __future__ import annotations

import numpy as np
import pytest

import minidl
from minidl import functions as F
from minidl import kernels

GAMMA = np.array([0.0, -0.7, 1.3, 0.8])   # a zero channel, a negative one, two positive ones
OP = "conv2d_batch_norm_max_pool2d"


def _conv_inputs(rng, kernel):
    C, OC = (16, 16) if kernel == "winograd" else (2, 4)   # Winograd: deep enough to apply
    x = rng.standard_normal((3, C, 6, 8))
    W = rng.standard_normal((OC, C, 3, 3)) * 0.3
    gamma = np.concatenate([GAMMA, rng.uniform(0.5, 2, OC - 4)])
    return [x, W, gamma, rng.standard_normal(OC)]


def _bn_inputs(rng):
    return [rng.standard_normal((3, 4, 6, 16)), GAMMA.copy(), rng.standard_normal(4)]


def _run(make, arrays, gy_seed=5):
    """(y, running mean, running var, grads of every input) of ``make(tensors, rm, rv)``."""
    ts = [minidl.tensor(a, dtype="float64", requires_grad=True) for a in arrays]
    OC = len(arrays[-1])
    rm, rv = np.full(OC, 0.5), np.full(OC, 2.0)
    y = make(ts, rm, rv)
    gy = np.random.default_rng(gy_seed).standard_normal(y.shape)
    y.backward(gy)
    return [y.data, rm, rv] + [t.grad for t in ts]


def _unfused(x, rm, rv, gamma, beta, training, relu):
    y = F.batch_norm(x, rm, rv, gamma, beta, training=training)
    return F.max_pool2d(F.relu(y) if relu else y, 2)


def _assert_same(fused, unfused):
    names = ["y", "running mean", "running var"] + [f"grad {i}" for i in range(len(fused) - 3)]
    for name, a, b in zip(names, fused, unfused):
        # the statistics are summed in another order: rounding apart, the same numbers (a
        # different window winner moves a gradient by O(1))
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("kernel", ["winograd", "per_image"])
def test_fused_conv_batch_norm_pool_with_gamma_zero_and_negative(kernel, training, relu):
    arrays = _conv_inputs(np.random.default_rng(0), kernel)

    def fused(ts, rm, rv):
        with kernels.force(OP, kernel):
            y = F.conv2d_batch_norm_max_pool2d(ts[0], ts[1], rm, rv, ts[2], ts[3], padding=1,
                                               training=training, relu=relu)
        assert type(y.creator).__name__ != "BatchNormMaxPool"   # the kernel ran
        return y

    def unfused(ts, rm, rv):
        return _unfused(F.conv2d(ts[0], ts[1], padding=1), rm, rv, ts[2], ts[3], training, relu)

    _assert_same(_run(fused, arrays), _run(unfused, arrays))


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("training", [True, False])
def test_fused_batch_norm_pool_with_gamma_zero_and_negative(training, relu):
    arrays = _bn_inputs(np.random.default_rng(1))
    fused = _run(lambda ts, rm, rv: F.batch_norm_max_pool2d(
        ts[0], rm, rv, ts[1], ts[2], training=training, relu=relu), arrays)
    unfused = _run(lambda ts, rm, rv: _unfused(ts[0], rm, rv, ts[1], ts[2], training, relu),
                   arrays)
    _assert_same(fused, unfused)


def test_zero_gamma_channel_sends_each_window_gradient_to_its_first_element():
    """What the unfused pooling does with a window of equal values, spelled out: x's largest
    element gets nothing, the window's top-left one gets it all."""
    x = np.random.default_rng(2).standard_normal((2, 4, 4, 16))
    t = minidl.tensor(x, dtype="float64", requires_grad=True)
    g = minidl.tensor(GAMMA, dtype="float64", requires_grad=True)
    F.batch_norm_max_pool2d(t, np.zeros(4), np.ones(4), g, np.zeros(4),
                            training=False).sum().backward()
    routed = t.grad[:, 0] != 0          # channel 0: gamma 0, so gx = 0 * routed gy ...
    assert not routed.any()
    # ... but d gamma sums x-hat over the winners: the top-left elements
    xhat0 = x[:, 0] / np.sqrt(1 + 1e-5)
    np.testing.assert_allclose(g.grad[0], xhat0[:, ::2, ::2].sum(), rtol=1e-12)


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("kernel", ["winograd", "per_image"])
def test_fused_conv_batch_norm_pool_matches_pytorch(kernel, relu):
    torch = pytest.importorskip("torch", reason="PyTorch is the peer for this check")
    arrays = _conv_inputs(np.random.default_rng(3), kernel)

    def fused(ts, rm, rv):
        with kernels.force(OP, kernel):
            return F.conv2d_batch_norm_max_pool2d(ts[0], ts[1], rm, rv, ts[2], ts[3],
                                                  padding=1, training=True, relu=relu)

    ours = _run(fused, arrays)
    tx, tW, tg, tb = (torch.tensor(a, requires_grad=True) for a in arrays)
    OC = len(arrays[-1])
    rm = torch.full((OC,), 0.5, dtype=torch.float64)
    rv = torch.full((OC,), 2.0, dtype=torch.float64)
    y = torch.nn.functional.batch_norm(torch.nn.functional.conv2d(tx, tW, padding=1), rm, rv,
                                       tg, tb, training=True, momentum=0.1, eps=1e-5)
    y = torch.nn.functional.max_pool2d(torch.relu(y) if relu else y, 2)
    y.backward(torch.tensor(np.random.default_rng(5).standard_normal(tuple(y.shape))))
    theirs = [y.detach().numpy(), rm.numpy(), rv.numpy()] + [t.grad.numpy()
                                                              for t in (tx, tW, tg, tb)]
    _assert_same(ours, theirs)


def test_fused_batch_norm_pool_matches_pytorch():
    torch = pytest.importorskip("torch", reason="PyTorch is the peer for this check")
    arrays = _bn_inputs(np.random.default_rng(4))
    ours = _run(lambda ts, rm, rv: F.batch_norm_max_pool2d(ts[0], rm, rv, ts[1], ts[2],
                                                           training=True), arrays)
    tx, tg, tb = (torch.tensor(a, requires_grad=True) for a in arrays)
    rm = torch.full((4,), 0.5, dtype=torch.float64)
    rv = torch.full((4,), 2.0, dtype=torch.float64)
    y = torch.nn.functional.max_pool2d(torch.nn.functional.batch_norm(
        tx, rm, rv, tg, tb, training=True, momentum=0.1, eps=1e-5), 2)
    y.backward(torch.tensor(np.random.default_rng(5).standard_normal(tuple(y.shape))))
    theirs = [y.detach().numpy(), rm.numpy(), rv.numpy()] + [t.grad.numpy()
                                                              for t in (tx, tg, tb)]
    _assert_same(ours, theirs)
