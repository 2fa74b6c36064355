"""minidl.functions.activation: NumPy formulas, float64 gradchecks, extremes, float32 kept."""
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


def away_from_zero(rng, shape, gap=0.05):
    """Random values with |x| >= gap: ReLU-like kinks stay out of the finite differences."""
    x = rng.uniform(gap, 3.0, shape)
    return x * rng.choice([-1.0, 1.0], shape)


def np_softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def np_log_softmax(x, axis):
    s = x - x.max(axis=axis, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=axis, keepdims=True))


CASES = {
    "sigmoid": (F.sigmoid, lambda x: 1.0 / (1.0 + np.exp(-x))),
    "tanh": (F.tanh, np.tanh),
    "relu": (F.relu, lambda x: np.where(x > 0, x, 0.0)),
    "leaky_relu": (F.leaky_relu, lambda x: np.where(x > 0, x, 0.01 * x)),
    "leaky_relu_0.2": (lambda t: F.leaky_relu(t, 0.2), lambda x: np.where(x > 0, x, 0.2 * x)),
    "softmax": (F.softmax, lambda x: np_softmax(x, -1)),
    "softmax_axis0": (lambda t: F.softmax(t, axis=0), lambda x: np_softmax(x, 0)),
    "log_softmax": (F.log_softmax, lambda x: np_log_softmax(x, -1)),
    "log_softmax_axis0": (lambda t: F.log_softmax(t, 0), lambda x: np_log_softmax(x, 0)),
}


@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 4)], ids=str)
@pytest.mark.parametrize("name", list(CASES))
def test_forward_and_gradcheck(xp, rng, name, shape):
    fn, ref = CASES[name]
    x = away_from_zero(rng, shape)
    y = fn(Tensor(dev(xp, x)))
    assert y.dtype == np.float64 and y.shape == shape
    np.testing.assert_allclose(host(y), ref(x), rtol=1e-12, atol=1e-14)
    gradcheck(fn, [dev(xp, x)])


def test_relu_gradient_at_zero_is_zero(xp):
    x = Tensor(dev(xp, [-1.0, 0.0, 2.0]), requires_grad=True)
    F.relu(x).sum().backward()
    np.testing.assert_array_equal(host(x.grad), [0.0, 0.0, 1.0])


def test_relu_of_infinities_and_nan(xp):
    y = host(F.relu(Tensor(dev(xp, [-np.inf, np.inf, -0.0, np.nan]))))
    np.testing.assert_array_equal(y[:3], [0.0, np.inf, 0.0])
    assert np.isnan(y[3])  # as PyTorch: a nan is not hidden


def test_leaky_relu_gradient(xp):
    x = Tensor(dev(xp, [-2.0, 3.0]), requires_grad=True)
    F.leaky_relu(x, 0.1).sum().backward()
    np.testing.assert_allclose(host(x.grad), [0.1, 1.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_saturates_without_overflow_or_warnings(xp, dtype):
    x = Tensor(dev(xp, [-1000.0, -50.0, 0.0, 50.0, 1000.0], dtype), requires_grad=True)
    y = F.sigmoid(x)
    out = host(y)
    assert out.dtype == dtype
    assert out[0] == 0.0 and out[-1] == 1.0 and out[2] == 0.5
    assert np.all(np.isfinite(out))
    y.sum().backward()
    g = host(x.grad)
    assert np.all(np.isfinite(g)) and g[0] == 0.0 and g[-1] == 0.0 and g[2] == 0.25


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tanh_saturates(xp, dtype):
    out = host(F.tanh(Tensor(dev(xp, [-1000.0, 1000.0], dtype))))
    np.testing.assert_array_equal(out, [-1.0, 1.0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shift", [1000.0, -1000.0, 1e30])
def test_softmax_and_log_softmax_are_stable_for_large_logits(xp, dtype, shift):
    base = np.array([[0.0, 1.0, 2.0], [3.0, 3.0, -1.0]])
    x = Tensor(dev(xp, base + shift if abs(shift) < 1e6 else base * shift, dtype),
               requires_grad=True)
    p = F.softmax(x)
    lp = F.log_softmax(x)
    assert p.dtype == dtype and lp.dtype == dtype
    if abs(shift) < 1e6:
        tol = 1e-6 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(host(p), np_softmax(base, -1), rtol=tol, atol=tol)
        np.testing.assert_allclose(host(lp), np_log_softmax(base, -1), rtol=tol, atol=tol)
    else:  # logits 1e30 apart: one-hot probabilities, finite log-probabilities where defined
        np.testing.assert_array_equal(host(p)[0], [0.0, 0.0, 1.0])
        assert host(lp)[0, 2] == 0.0 and np.all(np.isfinite(host(lp)))
    assert np.all(np.isfinite(host(p)))
    (p.sum() + lp.sum()).backward()
    assert np.all(np.isfinite(host(x.grad)))


def test_softmax_rows_sum_to_one_and_gradient_of_sum_vanishes(xp, rng):
    x = Tensor(dev(xp, rng.standard_normal((3, 4))), requires_grad=True)
    p = F.softmax(x, axis=1)
    np.testing.assert_allclose(host(p).sum(axis=1), 1.0, rtol=1e-12)
    p.sum().backward()
    np.testing.assert_allclose(host(x.grad), 0.0, atol=1e-15)


@pytest.mark.parametrize("name", list(CASES))
def test_float32_stays_float32(xp, rng, name):
    fn, _ = CASES[name]
    x = Tensor(dev(xp, away_from_zero(rng, (3, 4)), np.float32), requires_grad=True)
    y = fn(x)
    assert y.dtype == np.float32
    (y * 2.0).sum().backward()
    assert x.grad.dtype == np.float32


def _sigmoid_reference(x):
    """1 / (1 + exp(-x)) in numpy.longdouble (80-bit on x86: 64-bit mantissa), of the values
    exactly as given (float32 inputs are widened, not rounded again)."""
    xl = np.asarray(x).astype(np.longdouble)
    return np.longdouble(1) / (np.longdouble(1) + np.exp(-xl))


@pytest.mark.parametrize("dtype, bound", [(np.float32, 1e-6), (np.float64, 1e-14)])
def test_sigmoid_relative_error_over_minus_80_to_80(xp, dtype, bound):
    """Issue 21 item 6: 0.5 * tanh(x / 2) + 0.5 had relative error 2.6e-2 at x = -15 and 0.44
    at -17 in float32, returned 0 at -20 (float32) and at -40 (float64)."""
    if np.finfo(np.longdouble).eps > 1e-18:
        pytest.skip("numpy.longdouble is no wider than float64 here: no exact reference")
    x = np.linspace(-80.0, 80.0, 20001).astype(dtype)
    x = np.concatenate([x, np.array([-40.0, -20.0, -17.0, -15.0], dtype)])
    y = host(F.sigmoid(Tensor(dev(xp, x, dtype))))
    assert y.dtype == dtype and np.all(y > 0)
    ref = _sigmoid_reference(x)
    rel = np.abs((y.astype(np.longdouble) - ref) / ref)
    assert float(rel.max()) <= bound, (float(rel.max()), float(x[np.argmax(rel)]))


def test_sigmoid_matches_an_mpmath_reference_at_points():
    mpmath = pytest.importorskip("mpmath", reason="mpmath is not installed")
    mpmath.mp.dps = 40
    for dtype, bound in [(np.float32, 1e-6), (np.float64, 1e-14)]:
        x = np.array([-80.0, -40.0, -17.0, -1e-3, 0.0, 3.0, 80.0], dtype)
        y = minidl.to_host(F.sigmoid(Tensor(x)).data)
        for xi, yi in zip(x, y):
            ref = 1 / (1 + mpmath.exp(-mpmath.mpf(float(xi))))
            assert abs((mpmath.mpf(float(yi)) - ref) / ref) <= bound, (dtype, xi, yi)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_backward_is_y_times_one_minus_y_and_nan_propagates(xp, dtype):
    x = Tensor(dev(xp, [-30.0, -2.0, 0.5, np.nan], dtype), requires_grad=True)
    y = F.sigmoid(x)
    y.sum().backward()
    yh, g = host(y), host(x.grad)
    np.testing.assert_allclose(g[:3], (yh * (1 - yh))[:3], rtol=1e-6)
    assert np.isnan(yh[3]) and np.isnan(g[3])


def test_sigmoid_of_a_large_array_runs_in_parts_without_overflow_warnings(xp):
    """Over 1 MiB the CPU computes in parallel parts; exp(-x) overflowing to inf for very
    negative x must stay silent in every worker thread (the suite turns warnings into errors)."""
    x = np.tile(np.array([-1000.0, -100.0, -50.0, 0.0, 50.0, 1000.0], np.float32), 100_000)
    y = host(F.sigmoid(Tensor(dev(xp, x, np.float32))))
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_array_equal(y[:6], [0.0, 0.0, np.float32(1 / (1 + np.exp(50.0))), 0.5,
                                          1.0, 1.0])
    np.testing.assert_array_equal(y.reshape(-1, 6), np.broadcast_to(y[:6], (100_000, 6)))
