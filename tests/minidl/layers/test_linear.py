"""minidl.layers.linear: Linear and Flatten -- forward against NumPy, float64 gradients,
PyTorch parity, and error messages that name the layer, the expected and the actual."""
import numpy as np
import pytest

import minidl
from minidl import backend as B
from minidl.autograd import Tensor
from minidl.layers import Flatten, Linear
from minidl.testing import gradcheck


def dev(xp, a, dtype=np.float64):
    return xp.asarray(np.asarray(a, dtype=dtype))


def host(t):
    return minidl.to_host(t.data if isinstance(t, Tensor) else t)


@pytest.fixture
def f64():
    minidl.set_default_dtype(np.float64)


# --------------------------------------------------------------------------- Linear

@pytest.mark.parametrize("bias", [True, False])
def test_linear_forward_matches_formula(xp, rng, f64, bias):
    layer = Linear(4, 3, bias=bias)
    assert B.backend_of(layer.W.data).xp is xp  # built on the active backend
    assert layer.W.shape == (3, 4) and layer.W.dtype == np.float64
    assert (layer.b is None) == (not bias)
    x = rng.standard_normal((5, 4))
    y = layer(Tensor(dev(xp, x)))
    want = x @ host(layer.W).T + (host(layer.b) if bias else 0.0)
    np.testing.assert_allclose(host(y), want, rtol=1e-12, atol=1e-12)


def test_linear_layer_gradcheck(xp, rng, f64):
    layer = Linear(4, 3)
    W, b = layer.W.data, layer.b.data

    def fn(x, w, bb):  # the layer's forward with its parameters swapped for the checked ones
        layer.W, layer.b = w, bb
        return layer(x)

    gradcheck(fn, [dev(xp, rng.standard_normal((5, 4))), W, b])
    gradcheck(lambda x: layer(x), [dev(xp, rng.standard_normal((5, 4)))])


def test_linear_layer_parameter_gradients(xp, rng, f64):
    layer = Linear(4, 3)
    x, gy = rng.standard_normal((5, 4)), rng.standard_normal((5, 3))
    tx = Tensor(dev(xp, x), requires_grad=True)
    layer(tx).backward(dev(xp, gy))
    W = host(layer.W)
    np.testing.assert_allclose(host(tx.grad), gy @ W, rtol=1e-12)
    np.testing.assert_allclose(host(layer.W.grad), gy.T @ x, rtol=1e-12)
    np.testing.assert_allclose(host(layer.b.grad), gy.sum(axis=0), rtol=1e-12)


def test_linear_bias_init_bound_and_default_dtype(xp):
    layer = Linear(16, 50)
    assert layer.W.dtype == np.float32 and layer.b.dtype == np.float32
    assert np.all(np.abs(host(layer.b)) <= 1 / 4)
    assert np.all(np.abs(host(layer.W)) <= np.sqrt(6 / 16) + 1e-6)


def rel_err(a, b):
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_torch(xp, rng, f64, bias):
    torch = pytest.importorskip("torch")
    layer = Linear(6, 4, bias=bias)
    ref = torch.nn.Linear(6, 4, bias=bias, dtype=torch.float64)
    with torch.no_grad():
        ref.weight.copy_(torch.from_numpy(host(layer.W)))
        if bias:
            ref.bias.copy_(torch.from_numpy(host(layer.b)))
    x, gy = rng.standard_normal((5, 6)), rng.standard_normal((5, 4))
    tx = Tensor(dev(xp, x), requires_grad=True)
    y = layer(tx)
    y.backward(dev(xp, gy))
    rx = torch.tensor(x, requires_grad=True)
    ry = ref(rx)
    ry.backward(torch.from_numpy(gy))
    assert rel_err(host(y), ry.detach().numpy()) <= 1e-6
    assert rel_err(host(tx.grad), rx.grad.numpy()) <= 1e-6
    assert rel_err(host(layer.W.grad), ref.weight.grad.numpy()) <= 1e-6
    if bias:
        assert rel_err(host(layer.b.grad), ref.bias.grad.numpy()) <= 1e-6


def test_linear_repr():
    assert repr(Linear(784, 10)) == "Linear(784, 10, bias=True)"
    assert repr(Linear(3, 2, bias=False)) == "Linear(3, 2, bias=False)"


@pytest.mark.parametrize("args, shown", [
    ((0, 3), "in_features must be a positive int, got 0"),
    ((3, -1), "out_features must be a positive int, got -1"),
    ((2.0, 3), "in_features must be a positive int, got 2.0"),
    ((True, 3), "in_features must be a positive int, got True")])
def test_linear_rejects_bad_sizes(args, shown):
    with pytest.raises(ValueError, match="Linear: " + shown):
        Linear(*args)


def test_linear_rejects_unknown_init():
    with pytest.raises(ValueError, match=r"Linear: init must be one of \['he', 'he_normal', "
                                         r"'torch', 'xavier', 'xavier_normal'\], got 'glorot'"):
        Linear(3, 2, init="glorot")


def test_linear_rejects_wrong_rank_and_feature_count(xp):
    layer = Linear(4, 3)
    with pytest.raises(ValueError, match=r"Linear\(4, 3, bias=True\): expected input \(N, 4\), "
                                         r"got shape \(2, 2, 4\)"):
        layer(Tensor(dev(xp, np.zeros((2, 2, 4)), np.float32)))
    with pytest.raises(ValueError, match=r"Linear\(4, 3, bias=True\): expected input \(N, 4\), "
                                         r"got shape \(4,\)"):
        layer(Tensor(dev(xp, np.zeros(4), np.float32)))
    with pytest.raises(ValueError, match=r"Linear\(4, 3, bias=True\): expected input \(N, 4\), "
                                         r"got shape \(2, 5\)"):
        layer(Tensor(dev(xp, np.zeros((2, 5)), np.float32)))


def test_linear_rejects_wrong_dtype_and_type(xp):
    layer = Linear(4, 3)
    with pytest.raises(TypeError, match=r"Linear\(4, 3, bias=True\): expected input dtype "
                                        r"float32 \(the layer's parameters\), got float64"):
        layer(Tensor(dev(xp, np.zeros((2, 4)), np.float64)))
    with pytest.raises(TypeError, match=r"Linear\(4, 3, bias=True\): expected input \(N, 4\) "
                                        r"as a Tensor or array, got list"):
        layer([[0.0] * 4])


def test_linear_accepts_a_raw_array(xp):
    layer = Linear(4, 3)
    y = layer(dev(xp, np.ones((2, 4)), np.float32))
    assert y.shape == (2, 3)


def test_linear_rejects_input_on_another_device_strict():
    with B.use_backend("numpy"):
        layer = Linear(4, 3)
    x = Tensor(B.to_device(np.zeros((2, 4), np.float32), "strict"))
    with pytest.raises(B.DeviceMismatchError, match=r"Linear\(4, 3, bias=True\).*the layer's "
                                                    r"parameters is on cpu.*the input is on "
                                                    r"strict"):
        layer(x)


# --------------------------------------------------------------------------- Flatten

@pytest.mark.parametrize("start_axis, out_shape", [(1, (2, 60)), (2, (2, 3, 20)), (0, (120,))])
def test_flatten_forward_and_gradcheck(xp, rng, f64, start_axis, out_shape):
    layer = Flatten(start_axis)
    x = rng.standard_normal((2, 3, 4, 5))
    y = layer(Tensor(dev(xp, x)))
    np.testing.assert_array_equal(host(y), x.reshape(out_shape))
    gradcheck(lambda t: layer(t), [dev(xp, x)])


def test_flatten_then_linear(xp, rng, f64):
    x = rng.standard_normal((2, 1, 2, 3))
    fc = Linear(6, 2)
    y = fc(Flatten()(Tensor(dev(xp, x))))
    np.testing.assert_allclose(host(y), x.reshape(2, 6) @ host(fc.W).T + host(fc.b), rtol=1e-12)


def test_flatten_repr():
    assert repr(Flatten()) == "Flatten()"
    assert repr(Flatten(2)) == "Flatten(start_axis=2)"
