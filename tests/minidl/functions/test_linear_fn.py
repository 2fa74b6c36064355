"""minidl.functions.linear: y = x @ W^T + b against NumPy, float64 gradchecks, validation."""
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


@pytest.mark.parametrize("bias", [True, False])
def test_linear_forward_and_gradcheck(xp, rng, bias):
    x, W, b = rng.standard_normal((5, 4)), rng.standard_normal((3, 4)), rng.standard_normal(3)
    inputs = [dev(xp, x), dev(xp, W)] + ([dev(xp, b)] if bias else [])
    y = F.linear(*inputs)
    want = x @ W.T + (b if bias else 0.0)
    assert y.dtype == np.float64 and y.shape == (5, 3)
    np.testing.assert_allclose(host(y), want, rtol=1e-12, atol=1e-12)
    gradcheck(F.linear, inputs)


def test_linear_gradients_match_the_closed_form(xp, rng):
    x, W, b = rng.standard_normal((5, 4)), rng.standard_normal((3, 4)), rng.standard_normal(3)
    gy = rng.standard_normal((5, 3))
    tx, tW, tb = (Tensor(dev(xp, a), requires_grad=True) for a in (x, W, b))
    F.linear(tx, tW, tb).backward(dev(xp, gy))
    np.testing.assert_allclose(host(tx.grad), gy @ W, rtol=1e-12)
    np.testing.assert_allclose(host(tW.grad), gy.T @ x, rtol=1e-12)
    np.testing.assert_allclose(host(tb.grad), gy.sum(axis=0), rtol=1e-12)


def test_linear_keeps_float32(xp, rng):
    tx = Tensor(dev(xp, rng.standard_normal((2, 4)), np.float32), requires_grad=True)
    tW = Tensor(dev(xp, rng.standard_normal((3, 4)), np.float32), requires_grad=True)
    y = F.linear(tx, tW)
    assert y.dtype == np.float32
    y.sum().backward()
    assert tx.grad.dtype == np.float32 and tW.grad.dtype == np.float32


def test_linear_validates_shapes(xp):
    W = Tensor(dev(xp, np.zeros((3, 4))))
    with pytest.raises(ValueError, match=r"linear: x must be 2-D \(N, in_features\), got shape "
                                         r"\(4,\)"):
        F.linear(Tensor(dev(xp, np.zeros(4))), W)
    with pytest.raises(ValueError, match=r"linear: x has 5 features but W expects 4 "
                                         r"\(W shape \(3, 4\)\)"):
        F.linear(Tensor(dev(xp, np.zeros((2, 5)))), W)
