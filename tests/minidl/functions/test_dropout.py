"""minidl.functions.dropout: inverted dropout -- mask statistics, scaling, gradient through the
mask, identity in evaluation, seeding, validation."""
import numpy as np
import pytest

import minidl
from minidl import backend as B
from minidl import functions as F
from minidl.autograd import Tensor
from minidl.testing import gradcheck


def dev(xp, a, dtype=np.float64):
    return xp.asarray(np.asarray(a, dtype=dtype))


def host(t):
    return minidl.to_host(t.data if isinstance(t, Tensor) else t)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_dropout_zeroes_about_p_and_scales_the_rest(xp, p):
    x = Tensor(dev(xp, np.ones((200, 100)), np.float32))
    y = host(F.dropout(x, p))
    assert y.dtype == np.float32
    kept = y != 0
    np.testing.assert_allclose(y[kept], 1.0 / (1.0 - p), rtol=1e-6)
    # 20000 Bernoulli draws: the dropped fraction is within 5 standard deviations of p
    sd = np.sqrt(p * (1 - p) / y.size)
    assert abs((~kept).mean() - p) < 5 * sd
    assert abs(y.mean() - 1.0) < 0.05  # expectation is preserved


def test_dropout_gradient_is_the_same_mask(xp, rng):
    x = Tensor(dev(xp, rng.standard_normal((6, 7))), requires_grad=True)
    y = F.dropout(x, 0.5)
    gy = rng.standard_normal((6, 7))
    y.backward(dev(xp, gy))
    scale = host(y) / host(x)  # 0 where dropped, 2 where kept
    np.testing.assert_allclose(np.unique(np.round(scale, 12)), [0.0, 2.0])
    np.testing.assert_allclose(host(x.grad), gy * scale, rtol=1e-12)


def test_dropout_gradcheck_with_a_fixed_mask(xp, rng):
    # a fresh mask per call would break finite differences: reseed before every call
    def fn(t):
        B.seed(7)
        return F.dropout(t, 0.3)
    gradcheck(fn, [dev(xp, rng.standard_normal((4, 5)))])


@pytest.mark.parametrize("training, p", [(False, 0.5), (True, 0.0)])
def test_dropout_is_identity_in_eval_or_with_p_zero(xp, rng, training, p):
    x = Tensor(dev(xp, rng.standard_normal((3, 4))), requires_grad=True)
    y = F.dropout(x, p, training=training)
    np.testing.assert_array_equal(host(y), host(x))


def test_dropout_is_reproducible_after_seeding(xp):
    x = Tensor(dev(xp, np.ones((10, 10))))
    B.seed(3)
    a = host(F.dropout(x, 0.5))
    B.seed(3)
    b = host(F.dropout(x, 0.5))
    c = host(F.dropout(x, 0.5))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(b, c)


@pytest.mark.parametrize("p", [-0.1, 1.0, 1.5])
def test_dropout_rejects_bad_p(xp, p):
    with pytest.raises(ValueError, match=rf"dropout: p must be in \[0, 1\), got {p}"):
        F.dropout(Tensor(dev(xp, np.ones(3))), p)
