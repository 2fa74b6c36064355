"""minidl.layers conv, pooling and batch-norm layers: shapes, initialisation, train/eval
behaviour, buffers in the state_dict, reprs, and input errors that name the layer -- under every
backend (the ``xp`` fixture)."""
import numpy as np
import pytest

import minidl
from minidl import functions as F
from minidl import layers as L
from minidl.autograd import Tensor


def dev(xp, a, dtype=np.float32):
    return xp.asarray(np.asarray(a, dtype=dtype))


def host(t):
    return minidl.to_host(t.data if isinstance(t, Tensor) else t)


# --------------------------------------------------------------------------- Conv2d

def test_conv2d_shapes_init_and_forward(xp, rng):
    conv = L.Conv2d(3, 16, 3, stride=2, padding=1)
    assert conv.W.shape == (16, 3, 3, 3) and conv.b.shape == (16,)
    assert conv.W.dtype == np.float32 and minidl.get_array_module(conv.W.data) is xp
    bound = np.sqrt(6 / 27)                   # He uniform, fan_in = C*KH*KW
    W = host(conv.W)
    assert np.abs(W).max() <= bound and W.std() > 0.4 * bound
    assert np.abs(host(conv.b)).max() <= 1 / np.sqrt(27)
    x = dev(xp, rng.standard_normal((2, 3, 9, 8)))
    y = conv(x)
    assert y.shape == (2, 16, 5, 4)
    np.testing.assert_allclose(host(y), host(F.conv2d(x, conv.W, conv.b, 2, 1)), rtol=1e-6)
    y.sum().backward()
    assert conv.W.grad.shape == (16, 3, 3, 3) and conv.b.grad.shape == (16,)


def test_conv2d_init_is_reproducible_across_backends():
    minidl.seed(3)
    a = host(L.Conv2d(2, 4, 3, init="he_normal").W)
    minidl.seed(3)
    b = host(L.Conv2d(2, 4, 3, init="he_normal").W)
    np.testing.assert_array_equal(a, b)
    assert abs(a.std() - np.sqrt(2 / 18)) < 0.1


def test_conv2d_groups_dilation_no_bias_and_repr():
    conv = L.Conv2d(4, 8, (3, 5), stride=(1, 2), padding=(1, 2), dilation=2, groups=2,
                    bias=False)
    assert conv.W.shape == (8, 2, 3, 5) and conv.b is None
    assert [n for n, _ in conv.named_parameters()] == ["W"]
    assert repr(conv) == ("Conv2d(4, 8, kernel_size=(3, 5), stride=(1, 2), padding=(1, 2), "
                          "dilation=2, groups=2, bias=False)")
    assert repr(L.Conv2d(1, 32, 3, padding=1)) == "Conv2d(1, 32, kernel_size=3, padding=1)"


def test_conv2d_input_errors_name_the_layer(xp):
    conv = L.Conv2d(3, 16, 3)
    with pytest.raises(ValueError, match=r"^Conv2d\(3, 16, kernel_size=3\): expected input "
                                         r"with 3 channels \(N, 3, H, W\), got shape "
                                         r"\(8, 1, 28, 28\)$"):
        conv(dev(xp, np.zeros((8, 1, 28, 28))))
    with pytest.raises(ValueError, match=r"Conv2d\(3, 16, kernel_size=3\): expected input "
                                         r"with 3 channels \(N, 3, H, W\), got shape "
                                         r"\(3, 28, 28\)"):
        conv(dev(xp, np.zeros((3, 28, 28))))
    with pytest.raises(TypeError, match=r"Conv2d\(3, 16, kernel_size=3\): expected input "
                                        r"dtype float32 .*, got float64"):
        conv(dev(xp, np.zeros((1, 3, 5, 5)), np.float64))
    with pytest.raises(ValueError, match=r"Conv2d\(3, 16, kernel_size=3\): kernel 3x3 .* "
                                         r"larger than the padded input 2x2"):
        conv(dev(xp, np.zeros((1, 3, 2, 2))))
    with pytest.raises(TypeError, match=r"Conv2d\(3, 16, kernel_size=3\): expected input .* "
                                        r"as a Tensor or array, got list"):
        conv([[0.0]])


def test_conv2d_device_mismatch_names_the_layer():
    try:
        minidl.use_backend("strict")
    except Exception as exc:  # the strict backend is optional at this point
        pytest.skip(f"strict backend not importable: {exc}")
    with minidl.use_backend("numpy"):
        conv = L.Conv2d(1, 2, 3)
    with minidl.use_backend("strict") as b:
        x = b.xp.asarray(np.zeros((1, 1, 4, 4), dtype=np.float32))
        with pytest.raises(minidl.DeviceMismatchError, match=r"Conv2d\(1, 2, kernel_size=3\)"):
            conv(x)


@pytest.mark.parametrize("kwargs, message", [
    (dict(in_channels=0, out_channels=2, kernel_size=3), r"Conv2d: in_channels must be a "
                                                         r"positive int, got 0"),
    (dict(in_channels=3, out_channels=4, kernel_size=3, groups=2), r"must both be divisible "
                                                                   r"by groups \(2\)"),
    (dict(in_channels=3, out_channels=4, kernel_size=0), r"Conv2d: kernel_size must be >= 1"),
    (dict(in_channels=3, out_channels=4, kernel_size=3, padding=-1), r"padding must be >= 0"),
    (dict(in_channels=3, out_channels=4, kernel_size=3, init="lecun"), r"init must be one of"),
])
def test_conv2d_constructor_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        L.Conv2d(**kwargs)


# --------------------------------------------------------------------------- pooling

def test_pool_layers(xp, rng):
    x = dev(xp, rng.standard_normal((2, 3, 8, 8)))
    assert L.MaxPool2d(2)(x).shape == (2, 3, 4, 4)
    assert L.MaxPool2d(3, stride=2, padding=1)(x).shape == (2, 3, 4, 4)
    assert L.AvgPool2d(2)(x).shape == (2, 3, 4, 4)
    assert L.GlobalAvgPool2d()(x).shape == (2, 3)
    assert L.GlobalAvgPool2d(keepdims=True)(x).shape == (2, 3, 1, 1)
    np.testing.assert_allclose(host(L.AvgPool2d(2, 2)(x)), host(F.avg_pool2d(x, 2)))
    assert repr(L.MaxPool2d(2)) == "MaxPool2d(kernel_size=2)"
    assert repr(L.MaxPool2d(3, 2, 1)) == "MaxPool2d(kernel_size=3, stride=2, padding=1)"
    assert repr(L.AvgPool2d(2, count_include_pad=False)) == \
        "AvgPool2d(kernel_size=2, count_include_pad=False)"


def test_pool_layer_errors(xp):
    with pytest.raises(ValueError, match=r"^MaxPool2d\(kernel_size=2\): expected input "
                                         r"\(N, C, H, W\), got shape \(3, 8, 8\)$"):
        L.MaxPool2d(2)(dev(xp, np.zeros((3, 8, 8))))
    with pytest.raises(TypeError, match=r"AvgPool2d\(kernel_size=2\): expected a floating "
                                        r"input, got dtype int64"):
        L.AvgPool2d(2)(dev(xp, np.zeros((1, 1, 4, 4)), np.int64))
    with pytest.raises(ValueError, match=r"MaxPool2d\(kernel_size=5\): kernel 5x5 .* larger"):
        L.MaxPool2d(5)(dev(xp, np.zeros((1, 1, 4, 4))))
    with pytest.raises(ValueError, match=r"MaxPool2d: padding must be at most half"):
        L.MaxPool2d(2, padding=2)


# --------------------------------------------------------------------------- batch norm

def test_batchnorm2d_train_updates_running_stats_and_eval_uses_them(xp, rng):
    bn = L.BatchNorm2d(3)
    x = rng.standard_normal((8, 3, 4, 4)) * 2 + 5
    y = bn(dev(xp, x))
    yh = host(y)
    np.testing.assert_allclose(yh.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(yh.std(axis=(0, 2, 3)), 1, atol=1e-3)
    mean, var = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3), ddof=1)
    np.testing.assert_allclose(host(bn.running_mean), 0.1 * mean, rtol=1e-5)
    np.testing.assert_allclose(host(bn.running_var), 0.9 + 0.1 * var, rtol=1e-5)
    assert int(bn.num_batches_tracked) == 1
    bn.eval()
    y = bn(dev(xp, x))
    expected = (x - 0.1 * mean[None, :, None, None]) / np.sqrt(
        0.9 + 0.1 * var[None, :, None, None] + 1e-5)
    np.testing.assert_allclose(host(y), expected, rtol=1e-4, atol=1e-5)
    assert int(bn.num_batches_tracked) == 1   # eval leaves the statistics alone
    y.sum().backward()
    assert bn.gamma.grad.shape == (3,) and bn.beta.grad.shape == (3,)


def test_batchnorm_buffers_in_state_dict_and_round_trip(xp, rng, tmp_path):
    bn = L.BatchNorm1d(4)
    bn(dev(xp, rng.standard_normal((10, 4))))
    state = bn.state_dict()
    assert list(state) == ["gamma", "beta", "running_mean", "running_var",
                           "num_batches_tracked"]
    bn.save(tmp_path / "bn.npz")
    other = L.BatchNorm1d(4).load(tmp_path / "bn.npz")
    for k in ("running_mean", "running_var"):
        np.testing.assert_array_equal(host(getattr(other, k)), host(getattr(bn, k)))
    assert int(other.num_batches_tracked) == 1
    other(dev(xp, rng.standard_normal((10, 4))))   # still registered after loading
    assert int(other.num_batches_tracked) == 2
    assert list(other.state_dict()) == list(state)


def test_batchnorm1d_accepts_n_c_and_n_c_l(xp, rng):
    bn = L.BatchNorm1d(4, affine=False)
    assert bn.parameters() == []
    assert bn(dev(xp, rng.standard_normal((5, 4)))).shape == (5, 4)
    assert bn(dev(xp, rng.standard_normal((5, 4, 3)))).shape == (5, 4, 3)
    assert repr(bn) == "BatchNorm1d(4, affine=False)"


def test_batchnorm_errors_name_the_layer(xp):
    with pytest.raises(ValueError, match=r"^BatchNorm2d\(3\): expected input with 3 channels "
                                         r"\(N, 3, H, W\), got shape \(8, 4, 5, 5\)$"):
        L.BatchNorm2d(3)(dev(xp, np.zeros((8, 4, 5, 5))))
    with pytest.raises(ValueError, match=r"BatchNorm1d\(3\): expected input with 3 features "
                                         r"\(N, 3\) or \(N, 3, L\), got shape \(8, 3, 5, 5\)"):
        L.BatchNorm1d(3)(dev(xp, np.zeros((8, 3, 5, 5))))
    with pytest.raises(TypeError, match=r"BatchNorm2d\(3\): expected input dtype float32"):
        L.BatchNorm2d(3)(dev(xp, np.zeros((8, 3, 5, 5)), np.float64))
    with pytest.raises(ValueError, match=r"BatchNorm2d: num_features must be a positive int"):
        L.BatchNorm2d(0)
    with pytest.raises(ValueError, match=r"BatchNorm1d: momentum must be a number in \[0, 1\]"):
        L.BatchNorm1d(3, momentum=1.5)


# --------------------------------------------------------------------------- the CNN

def test_mnist_cnn_stack_trains_one_step(xp, rng):
    model = L.Sequential(
        L.Conv2d(1, 4, 3, padding=1, bias=False), L.BatchNorm2d(4), L.ReLU(), L.MaxPool2d(2),
        L.Conv2d(4, 8, 3, padding=1, bias=False), L.BatchNorm2d(8), L.ReLU(), L.MaxPool2d(2),
        L.Flatten(), L.Linear(8 * 7 * 7, 10))
    x = dev(xp, rng.standard_normal((4, 1, 28, 28)))
    labels = xp.asarray(np.array([0, 1, 2, 3]))
    loss = F.softmax_cross_entropy(model(x), labels)
    loss.backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in model.parameters())
    assert np.isfinite(float(loss.data))
