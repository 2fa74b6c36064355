"""minidl.functions.loss: softmax cross-entropy (index and probability targets), binary
cross-entropy with logits, mean squared error -- formulas, gradchecks, reductions, validation."""
import numpy as np
import pytest

import minidl
from minidl import functions as F
from minidl.autograd import Tensor
from minidl.testing import gradcheck

REDUCTIONS = ["mean", "sum", "none"]


def dev(xp, a, dtype=np.float64):
    return xp.asarray(np.asarray(a, dtype=dtype))


def host(t):
    return minidl.to_host(t.data if isinstance(t, Tensor) else t)


def reduce(per, reduction, n):
    return {"mean": per.sum() / n, "sum": per.sum(), "none": per}[reduction]


def np_log_softmax(x):
    s = x - x.max(axis=1, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=1, keepdims=True))


# --------------------------------------------------------------------------- cross-entropy

@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_with_class_indices(xp, rng, reduction):
    logits = rng.standard_normal((5, 4)) * 3
    t = np.array([0, 3, 3, 1, 2])
    want = reduce(-np_log_softmax(logits)[np.arange(5), t], reduction, 5)
    targets = xp.asarray(t)
    y = F.softmax_cross_entropy(Tensor(dev(xp, logits)), targets, reduction=reduction)
    assert y.dtype == np.float64 and y.shape == np.shape(want)
    np.testing.assert_allclose(host(y), want, rtol=1e-12)
    gradcheck(lambda z, tt: F.softmax_cross_entropy(z, tt, reduction=reduction),
              [dev(xp, logits), targets])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind", ["one_hot", "soft", "unnormalized"])
def test_cross_entropy_with_probability_targets(xp, rng, reduction, kind):
    logits = rng.standard_normal((5, 4)) * 3
    if kind == "one_hot":
        t = np.eye(4)[[1, 0, 3, 3, 2]]
    else:
        t = rng.uniform(0.0, 1.0, (5, 4))
        if kind == "soft":
            t /= t.sum(axis=1, keepdims=True)
    want = reduce(-(t * np_log_softmax(logits)).sum(axis=1), reduction, 5)
    y = F.cross_entropy(Tensor(dev(xp, logits)), dev(xp, t), reduction=reduction)
    np.testing.assert_allclose(host(y), want, rtol=1e-12)
    gradcheck(lambda z, tt: F.cross_entropy(z, tt, reduction=reduction),
              [dev(xp, logits), dev(xp, t)], check=[0])


def test_one_hot_targets_equal_index_targets(xp, rng):
    logits = Tensor(dev(xp, rng.standard_normal((6, 3))), requires_grad=True)
    t = np.array([2, 0, 1, 1, 0, 2])
    a = F.cross_entropy(logits, xp.asarray(t))
    a.backward()
    g_index = host(logits.grad)
    logits.zero_grad()
    b = F.cross_entropy(logits, xp.asarray(np.eye(3, dtype=np.int64)[t]))  # int one-hot: cast
    b.backward()
    np.testing.assert_allclose(host(b), host(a), rtol=1e-14)
    np.testing.assert_allclose(host(logits.grad), g_index, rtol=1e-14, atol=1e-16)


def test_cross_entropy_gradient_is_softmax_minus_target_over_n(xp, rng):
    logits = rng.standard_normal((4, 3))
    t = np.array([0, 2, 1, 1])
    x = Tensor(dev(xp, logits), requires_grad=True)
    F.cross_entropy(x, Tensor(xp.asarray(t))).backward()  # a Tensor target is unwrapped
    p = np.exp(np_log_softmax(logits))
    np.testing.assert_allclose(host(x.grad), (p - np.eye(3)[t]) / 4, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_is_stable_for_large_logits(xp, dtype):
    x = Tensor(dev(xp, [[1000.0, 0.0, -1000.0], [0.0, 5000.0, 0.0]], dtype), requires_grad=True)
    loss = F.cross_entropy(x, xp.asarray(np.array([2, 1])), reduction="none")
    np.testing.assert_allclose(host(loss), [2000.0, 0.0])
    loss.sum().backward()
    np.testing.assert_allclose(host(x.grad), [[1.0, 0.0, -1.0], [0.0, 0.0, 0.0]], atol=1e-6)


def test_cross_entropy_validates_its_inputs(xp):
    logits = Tensor(dev(xp, np.zeros((3, 4))))
    idx = xp.asarray(np.array([0, 1, 2]))
    with pytest.raises(ValueError, match=r"logits must be 2-D \(N, C\), got shape \(4,\)"):
        F.cross_entropy(Tensor(dev(xp, np.zeros(4))), idx)
    with pytest.raises(TypeError, match="1-D targets must hold integer class indices, got dtype "
                                        "float64"):
        F.cross_entropy(logits, dev(xp, [0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"targets must have shape \(3,\) to match logits "
                                         r"\(3, 4\), got \(2,\)"):
        F.cross_entropy(logits, xp.asarray(np.array([0, 1])))
    with pytest.raises(ValueError, match=r"\(N, C\) = \(3, 4\) probabilities, got shape \(3, 3\)"):
        F.cross_entropy(logits, dev(xp, np.zeros((3, 3))))
    with pytest.raises(TypeError, match="targets must be an array or Tensor, got list"):
        F.cross_entropy(logits, [0, 1, 2])
    with pytest.raises(ValueError, match=r"reduction must be one of \('mean', 'sum', 'none'\), "
                                         r"got 'avg'"):
        F.cross_entropy(logits, idx, reduction="avg")


@pytest.mark.parametrize("bad, shown", [([0, -1, 2], r"\[-1, 2\]"), ([0, 4, 1], r"\[0, 4\]")])
def test_cross_entropy_rejects_out_of_range_class_indices(xp, bad, shown):
    logits = Tensor(dev(xp, np.zeros((3, 4))))
    with pytest.raises(ValueError, match=r"targets must be class indices in \[0, 4\), got values "
                                         r"in " + shown):
        F.cross_entropy(logits, xp.asarray(np.array(bad)))


# --------------------------------------------------------------------------- binary cross-entropy

def np_bce(x, t):
    p = 1.0 / (1.0 + np.exp(-x))
    return -(t * np.log(p) + (1 - t) * np.log(1 - p))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(6,), (3, 4)], ids=str)
def test_binary_cross_entropy_with_logits(xp, rng, reduction, shape):
    x = rng.standard_normal(shape) * 3
    t = rng.uniform(0.0, 1.0, shape)
    t.flat[::2] = np.round(t.flat[::2])  # hard and soft labels
    per = np_bce(x, t)
    want = {"mean": per.mean(), "sum": per.sum(), "none": per}[reduction]
    y = F.binary_cross_entropy_with_logits(Tensor(dev(xp, x)), dev(xp, t), reduction=reduction)
    np.testing.assert_allclose(host(y), want, rtol=1e-12)
    gradcheck(lambda z, tt: F.binary_cross_entropy_with_logits(z, tt, reduction=reduction),
              [dev(xp, x), dev(xp, t)], check=[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_cross_entropy_is_stable_for_extreme_logits(xp, dtype):
    x = Tensor(dev(xp, [-1000.0, 1000.0, -1000.0, 1000.0], dtype), requires_grad=True)
    t = dev(xp, [0.0, 1.0, 1.0, 0.0], dtype)
    loss = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    np.testing.assert_allclose(host(loss), [0.0, 0.0, 1000.0, 1000.0])
    loss.sum().backward()
    np.testing.assert_allclose(host(x.grad), [0.0, 0.0, -1.0, 1.0])


def test_binary_cross_entropy_validates_shapes_and_casts_targets(xp):
    x = Tensor(dev(xp, np.zeros((2, 3)), np.float32))
    with pytest.raises(ValueError, match=r"targets must have the shape of logits \(2, 3\), "
                                         r"got \(3,\)"):
        F.binary_cross_entropy_with_logits(x, dev(xp, np.zeros(3)))
    with pytest.raises(ValueError, match="reduction must be one of"):
        F.binary_cross_entropy_with_logits(x, dev(xp, np.zeros((2, 3))), reduction="max")
    int_targets = Tensor(xp.asarray(np.ones((2, 3), np.int64)))
    y = F.binary_cross_entropy_with_logits(x, int_targets)
    assert y.dtype == np.float32
    np.testing.assert_allclose(host(y), np.log(2.0), rtol=1e-6)


# --------------------------------------------------------------------------- mse

@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_mse(xp, rng, reduction):
    y, t = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    sq = (y - t) ** 2
    want = {"mean": sq.mean(), "sum": sq.sum(), "none": sq}[reduction]
    out = F.mse_loss(Tensor(dev(xp, y)), dev(xp, t), reduction=reduction)
    np.testing.assert_allclose(host(out), want, rtol=1e-12)
    # both arguments are differentiable (t as a Tensor that requires grad)
    gradcheck(lambda a, b: F.mse_loss(a, b, reduction=reduction), [dev(xp, y), dev(xp, t)])


def test_mse_validates(xp):
    y = Tensor(dev(xp, np.zeros((2, 3))))
    with pytest.raises(ValueError, match=r"mse_loss: t must have the shape of y \(2, 3\), "
                                         r"got \(3, 2\)"):
        F.mse_loss(y, dev(xp, np.zeros((3, 2))))
    with pytest.raises(ValueError, match="reduction must be one of"):
        F.mse_loss(y, dev(xp, np.zeros((2, 3))), reduction="mean ")


# --------------------------------------------------------------------------- float32

LOSSES = {
    "ce_index": lambda x, xp: F.cross_entropy(x, xp.asarray(np.array([0, 2]))),
    "ce_probs_float64": lambda x, xp: F.cross_entropy(x, dev(xp, [[0.2, 0.8, 0], [0, 0, 1]])),
    "ce_sum": lambda x, xp: F.cross_entropy(x, xp.asarray(np.array([0, 2])), reduction="sum"),
    "ce_none": lambda x, xp: F.cross_entropy(x, xp.asarray(np.array([1, 1])), reduction="none"),
    "bce_float64_targets": lambda x, xp: F.binary_cross_entropy_with_logits(
        x, dev(xp, np.ones((2, 3)))),
    "bce_none": lambda x, xp: F.binary_cross_entropy_with_logits(
        x, dev(xp, np.ones((2, 3)), np.float32), reduction="none"),
    "mse_float64_target": lambda x, xp: F.mse_loss(x, dev(xp, np.ones((2, 3)))),
    "mse_sum": lambda x, xp: F.mse_loss(x, dev(xp, np.ones((2, 3)), np.float32), reduction="sum"),
}


@pytest.mark.parametrize("name", list(LOSSES))
def test_float32_stays_float32(xp, name):
    x = Tensor(dev(xp, [[0.5, -1.0, 2.0], [1.5, 3.0, -0.25]], np.float32), requires_grad=True)
    loss = LOSSES[name](x, xp)
    assert loss.dtype == np.float32
    loss.sum().backward()
    assert x.grad.dtype == np.float32


# --------------------------------------------------------------------------- PyTorch parity

def rel_err(a, b):
    return np.max(np.abs(np.asarray(a) - np.asarray(b))) / max(np.max(np.abs(b)), 1e-300)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kind", ["index", "probs"])
def test_cross_entropy_matches_torch(xp, rng, reduction, kind):
    torch = pytest.importorskip("torch")
    logits = rng.standard_normal((6, 5)) * 3
    if kind == "index":
        t = rng.integers(0, 5, 6)
        targets, torch_targets = xp.asarray(t), torch.from_numpy(t)
    else:
        t = rng.uniform(0.0, 1.0, (6, 5))
        t /= t.sum(axis=1, keepdims=True)
        targets, torch_targets = dev(xp, t), torch.from_numpy(t)
    x = Tensor(dev(xp, logits), requires_grad=True)
    y = F.cross_entropy(x, targets, reduction=reduction)
    gy = rng.standard_normal(y.shape)
    y.backward(dev(xp, gy))
    rx = torch.tensor(logits, requires_grad=True)
    ry = torch.nn.functional.cross_entropy(rx, torch_targets, reduction=reduction)
    ry.backward(torch.from_numpy(np.asarray(gy)))
    assert rel_err(host(y), ry.detach().numpy()) <= 1e-6
    assert rel_err(host(x.grad), rx.grad.numpy()) <= 1e-6


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_and_mse_match_torch(xp, rng, reduction):
    torch = pytest.importorskip("torch")
    tf = torch.nn.functional
    a, b = rng.standard_normal((4, 3)) * 3, rng.uniform(0.0, 1.0, (4, 3))
    for ours, theirs in [(F.binary_cross_entropy_with_logits, tf.binary_cross_entropy_with_logits),
                         (F.mse_loss, tf.mse_loss)]:
        x = Tensor(dev(xp, a), requires_grad=True)
        y = ours(x, dev(xp, b), reduction=reduction)
        gy = rng.standard_normal(y.shape)
        y.backward(dev(xp, gy))
        rx = torch.tensor(a, requires_grad=True)
        ry = theirs(rx, torch.from_numpy(b), reduction=reduction)
        ry.backward(torch.from_numpy(np.asarray(gy)))
        assert rel_err(host(y), ry.detach().numpy()) <= 1e-6, ours.__name__
        assert rel_err(host(x.grad), rx.grad.numpy()) <= 1e-6, ours.__name__
