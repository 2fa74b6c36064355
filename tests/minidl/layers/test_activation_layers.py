"""minidl.layers.activation: each activation layer against a NumPy formula, a float64
gradcheck, PyTorch parity (forward and input gradient), Dropout's train/eval behaviour."""
import numpy as np
import pytest

import minidl
from minidl import layers as L
from minidl.autograd import Tensor
from minidl.testing import gradcheck


def dev(xp, a, dtype=np.float64):
    return xp.asarray(np.asarray(a, dtype=dtype))


def host(t):
    return minidl.to_host(t.data if isinstance(t, Tensor) else t)


def away_from_zero(rng, shape, gap=0.05):
    return rng.uniform(gap, 3.0, shape) * rng.choice([-1.0, 1.0], shape)


def np_softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


LAYERS = {
    "ReLU": (L.ReLU, lambda x: np.maximum(x, 0.0), "ReLU", {}),
    "LeakyReLU": (L.LeakyReLU, lambda x: np.where(x > 0, x, 0.01 * x), "LeakyReLU", {}),
    "LeakyReLU_0.2": (lambda: L.LeakyReLU(0.2), lambda x: np.where(x > 0, x, 0.2 * x),
                      "LeakyReLU", {"negative_slope": 0.2}),
    "Sigmoid": (L.Sigmoid, lambda x: 1 / (1 + np.exp(-x)), "Sigmoid", {}),
    "Tanh": (L.Tanh, np.tanh, "Tanh", {}),
    "Softmax": (L.Softmax, lambda x: np_softmax(x, -1), "Softmax", {"dim": -1}),
    "Softmax_axis0": (lambda: L.Softmax(axis=0), lambda x: np_softmax(x, 0), "Softmax",
                      {"dim": 0}),
    "LogSoftmax": (L.LogSoftmax, lambda x: np.log(np_softmax(x, -1)), "LogSoftmax", {"dim": -1}),
    "Dropout_eval": (lambda: L.Dropout(0.5).eval(), lambda x: x, "Dropout", {"p": 0.5}),
}


@pytest.mark.parametrize("name", list(LAYERS))
def test_forward_and_gradcheck(xp, rng, name):
    make, ref, _, _ = LAYERS[name]
    layer = make()
    x = away_from_zero(rng, (4, 5))
    y = layer(Tensor(dev(xp, x)))
    assert y.dtype == np.float64
    np.testing.assert_allclose(host(y), ref(x), rtol=1e-12, atol=1e-14)
    gradcheck(lambda t: layer(t), [dev(xp, x)])


@pytest.mark.parametrize("name", list(LAYERS))
def test_matches_torch(xp, rng, name):
    torch = pytest.importorskip("torch")
    make, _, torch_name, kwargs = LAYERS[name]
    layer, ref = make(), getattr(torch.nn, torch_name)(**kwargs)
    ref.eval()
    x, gy = away_from_zero(rng, (4, 5)), rng.standard_normal((4, 5))
    tx = Tensor(dev(xp, x), requires_grad=True)
    y = layer(tx)
    y.backward(dev(xp, gy))
    rx = torch.tensor(x, requires_grad=True)
    ry = ref(rx)
    ry.backward(torch.from_numpy(gy))
    for got, want in [(host(y), ry.detach().numpy()), (host(tx.grad), rx.grad.numpy())]:
        assert np.max(np.abs(got - want)) <= 1e-6 * np.max(np.abs(want))


def test_activation_layers_have_no_parameters_and_readable_reprs():
    assert repr(L.ReLU()) == "ReLU()"
    assert repr(L.LeakyReLU(0.2)) == "LeakyReLU(slope=0.2)"
    assert repr(L.Softmax(axis=1)) == "Softmax(axis=1)"
    assert repr(L.LogSoftmax()) == "LogSoftmax(axis=-1)"
    assert repr(L.Dropout(0.25)) == "Dropout(p=0.25)"
    for layer in (L.ReLU(), L.Sigmoid(), L.Tanh(), L.Softmax(), L.Dropout()):
        assert layer.parameters() == [] and layer.num_parameters() == 0


def test_dropout_layer_follows_train_and_eval(xp):
    layer = L.Dropout(0.5)
    x = Tensor(dev(xp, np.ones((50, 40)), np.float32))
    y = host(layer(x))
    assert set(np.unique(y)) == {0.0, 2.0}
    assert 0.4 < (y == 0).mean() < 0.6
    layer.eval()
    np.testing.assert_array_equal(host(layer(x)), 1.0)
    layer.train()
    assert (host(layer(x)) == 0).any()


@pytest.mark.parametrize("p", [-0.5, 1.0, 2])
def test_dropout_layer_rejects_bad_p(p):
    with pytest.raises(ValueError, match=rf"Dropout: p must be in \[0, 1\), got {p}"):
        L.Dropout(p)
