"""minidl.functions.normalization: batch_norm against the formula, float64 gradchecks in
training and evaluation, running statistics, PyTorch parity and errors -- under every backend."""
import numpy as np
import pytest

import minidl
from minidl import functions as F
from minidl.autograd import Tensor
from minidl.testing import gradcheck


def dev(xp, a, dtype=np.float64):
    return xp.asarray(np.asarray(a, dtype=dtype))


def host(t):
    return minidl.to_host(t.data if isinstance(t, Tensor) else t)


def ref_batch_norm(x, gamma, beta, mean=None, var=None, eps=1e-5):
    axes = (0,) if x.ndim == 2 else (0, 2) if x.ndim == 3 else (0, 2, 3)
    shape = [1, -1] + [1] * (x.ndim - 2)
    if mean is None:
        mean, var = x.mean(axis=axes), x.var(axis=axes)
    xhat = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    return xhat * gamma.reshape(shape) + beta.reshape(shape)


SHAPES = [(8, 3), (4, 3, 5), (4, 3, 3, 2)]


@pytest.fixture(autouse=True)
def _float64():
    minidl.set_default_dtype(np.float64)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_training_forward_running_stats_and_gradcheck(xp, rng, shape):
    C = shape[1]
    x = rng.standard_normal(shape) * 2 + 1
    gamma, beta = rng.uniform(0.5, 2, C), rng.standard_normal(C)
    rm, rv = dev(xp, np.full(C, 0.5)), dev(xp, np.full(C, 2.0))
    y = F.batch_norm(dev(xp, x), rm, rv, dev(xp, gamma), dev(xp, beta), training=True)
    np.testing.assert_allclose(host(y), ref_batch_norm(x, gamma, beta), rtol=1e-10, atol=1e-12)
    axes = tuple(i for i in range(x.ndim) if i != 1)
    M = x.size // C
    np.testing.assert_allclose(host(rm), 0.9 * 0.5 + 0.1 * x.mean(axis=axes), rtol=1e-12)
    np.testing.assert_allclose(host(rv), 0.9 * 2.0 + 0.1 * x.var(axis=axes) * M / (M - 1),
                               rtol=1e-12)
    gradcheck(lambda *t: F.batch_norm(t[0], None, None, t[1], t[2], training=True),
              [dev(xp, x), dev(xp, gamma), dev(xp, beta)])


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_eval_uses_running_stats_and_gradcheck(xp, rng, shape):
    C = shape[1]
    x = rng.standard_normal(shape)
    gamma, beta = rng.uniform(0.5, 2, C), rng.standard_normal(C)
    mean, var = rng.standard_normal(C), rng.uniform(0.5, 2, C)
    rm, rv = dev(xp, mean), dev(xp, var)
    fn = lambda *t: F.batch_norm(t[0], rm, rv, t[1], t[2], training=False)  # noqa: E731
    y = fn(dev(xp, x), dev(xp, gamma), dev(xp, beta))
    np.testing.assert_allclose(host(y), ref_batch_norm(x, gamma, beta, mean, var), rtol=1e-12)
    np.testing.assert_array_equal(host(rm), mean)   # untouched
    gradcheck(fn, [dev(xp, x), dev(xp, gamma), dev(xp, beta)])


def test_without_affine(xp, rng):
    x = rng.standard_normal((6, 2, 3, 3))
    y = F.batch_norm(dev(xp, x), training=True)
    np.testing.assert_allclose(host(y), ref_batch_norm(x, np.ones(2), np.zeros(2)), rtol=1e-10,
                               atol=1e-12)
    gradcheck(lambda t: F.batch_norm(t, training=True), [dev(xp, x)])


def test_float32_stays_float32(xp, rng):
    x = Tensor(dev(xp, rng.standard_normal((4, 3, 2, 2)), np.float32), requires_grad=True)
    g = Tensor(dev(xp, np.ones(3), np.float32), requires_grad=True)
    b = Tensor(dev(xp, np.zeros(3), np.float32), requires_grad=True)
    rm, rv = dev(xp, np.zeros(3), np.float32), dev(xp, np.ones(3), np.float32)
    y = F.batch_norm(x, rm, rv, g, b, training=True)
    y.sum().backward()
    assert y.dtype == x.grad.dtype == g.grad.dtype == rm.dtype == rv.dtype == np.float32


def test_bad_arguments_have_clear_messages(xp):
    x = dev(xp, np.zeros((4, 3, 2, 2)))
    c3 = dev(xp, np.zeros(3))
    with pytest.raises(ValueError, match=r"batch_norm: x must be \(N, C\), \(N, C, L\) or "
                                         r"\(N, C, H, W\), got shape \(4,\)"):
        F.batch_norm(dev(xp, np.zeros(4)), training=True)
    with pytest.raises(ValueError, match=r"batch_norm: gamma must have shape \(3,\) for an "
                                         r"input with 3 channels, got \(2,\)"):
        F.batch_norm(x, gamma=dev(xp, np.ones(2)), beta=dev(xp, np.ones(2)), training=True)
    with pytest.raises(ValueError, match=r"running_mean is required when training=False"):
        F.batch_norm(x, training=False)
    with pytest.raises(ValueError, match=r"training needs more than one value per channel, "
                                         r"got input shape \(1, 3\)"):
        F.batch_norm(dev(xp, np.zeros((1, 3))), training=True)
    with pytest.raises(ValueError, match=r"give both gamma and beta"):
        F.batch_norm(x, gamma=c3, training=True)
    with pytest.raises(ValueError, match=r"momentum must be a number in \[0, 1\], got 2"):
        F.batch_norm(x, training=True, momentum=2)
    with pytest.raises(TypeError, match=r"batch_norm: x must be floating, got dtype int64"):
        F.batch_norm(dev(xp, np.zeros((4, 3)), np.int64), training=True)


# --------------------------------------------------------------------------- PyTorch parity

def rel_err(a, b):
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


@pytest.mark.parametrize("shape", [(16, 5), (6, 5, 7, 4)], ids=str)
def test_matches_torch_train_step_then_eval(rng, shape):
    torch = pytest.importorskip("torch")
    C = shape[1]
    x, x2 = rng.standard_normal(shape) * 3 + 1, rng.standard_normal(shape)
    gamma, beta = rng.uniform(0.5, 2, C), rng.standard_normal(C)
    rm, rv = np.zeros(C), np.ones(C)
    trm, trv = torch.zeros(C, dtype=torch.float64), torch.ones(C, dtype=torch.float64)
    for training, data in ((True, x), (True, x2), (False, x2)):
        ts = [Tensor(a.copy(), requires_grad=True) for a in (data, gamma, beta)]
        y = F.batch_norm(ts[0], rm, rv, ts[1], ts[2], training=training)
        gy = rng.standard_normal(shape)
        y.backward(gy)
        tt = [torch.tensor(a, requires_grad=True) for a in (data, gamma, beta)]
        ty = torch.nn.functional.batch_norm(tt[0], trm, trv, tt[1], tt[2], training=training,
                                            momentum=0.1, eps=1e-5)
        ty.backward(torch.tensor(gy))
        assert rel_err(y.data, ty.detach().numpy()) <= 1e-6
        for mine, theirs in zip(ts, tt):
            assert rel_err(mine.grad, theirs.grad.numpy()) <= 1e-6
        assert rel_err(rm, trm.numpy()) <= 1e-6 and rel_err(rv, trv.numpy()) <= 1e-6
