"""The ops the ImageNet models added: local response normalisation and adaptive average
pooling (minidl/functions/lrn.py, adaptive_pooling.py and their layers) -- naive references,
float64 gradchecks under every backend, PyTorch parity, errors."""
import numpy as np
import pytest

import minidl
from minidl.autograd import Tensor
from minidl.functions.adaptive_pooling import adaptive_avg_pool2d, adaptive_bins
from minidl.functions.lrn import local_response_norm
from minidl.layers.adaptive_pooling import AdaptiveAvgPool2d
from minidl.layers.lrn import LocalResponseNorm
from minidl.testing import gradcheck


def dev(xp, a, dtype=np.float64):
    return xp.asarray(np.asarray(a, dtype=dtype))


def host(t):
    return minidl.to_host(t.data if isinstance(t, Tensor) else t)


def naive_lrn(x, size, alpha, beta, k):
    C = x.shape[1]
    y = np.empty_like(x)
    for c in range(C):
        lo, hi = max(0, c - size // 2), min(C, c + (size - 1) // 2 + 1)
        d = k + alpha / size * (x[:, lo:hi] ** 2).sum(axis=1)
        y[:, c] = x[:, c] / d ** beta
    return y


def naive_adaptive(x, oh, ow):
    N, C, H, W = x.shape
    y = np.empty((N, C, oh, ow))
    for i, (h0, h1) in enumerate(adaptive_bins(H, oh)):
        for j, (w0, w1) in enumerate(adaptive_bins(W, ow)):
            y[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
    return y


LRN_CASES = [(5, 1e-4, 0.75, 2.0), (2, 0.5, 0.75, 1.0), (4, 1.0, 0.5, 1.5), (1, 0.3, 1.0, 1.0),
             (9, 2.0, 0.75, 1.0)]          # size > C: the window covers every channel


@pytest.mark.parametrize("size, alpha, beta, k", LRN_CASES, ids=str)
def test_lrn_matches_naive_and_gradchecks(xp, rng, size, alpha, beta, k):
    x = rng.standard_normal((2, 6, 3, 4))
    fn = lambda t: local_response_norm(t, size, alpha, beta, k)  # noqa: E731
    np.testing.assert_allclose(host(fn(dev(xp, x))), naive_lrn(x, size, alpha, beta, k),
                               rtol=1e-12)
    gradcheck(fn, [dev(xp, x)])


def test_lrn_on_3d_input_gradchecks(xp, rng):
    gradcheck(lambda t: local_response_norm(t, 3, 0.5, 0.75, 1.0),
              [dev(xp, rng.standard_normal((2, 5, 7)))])


@pytest.mark.parametrize("size, alpha, beta, k", LRN_CASES, ids=str)
def test_lrn_matches_torch_forward_and_backward(rng, size, alpha, beta, k):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 6, 5, 5))
    g = rng.standard_normal(x.shape)
    t = Tensor(x, requires_grad=True)
    y = LocalResponseNorm(size, alpha, beta, k)(t)
    y.backward(g)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.LocalResponseNorm(size, alpha, beta, k)(tx)
    ty.backward(torch.tensor(g))
    np.testing.assert_allclose(y.data, ty.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(t.grad, tx.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_alexnet_lrn_parity_with_torch_float32(rng):
    """AlexNet's setting (size 5, alpha 1e-4, beta 0.75, k 2) on post-ReLU conv1 maps."""
    torch = pytest.importorskip("torch")
    x = np.maximum(rng.standard_normal((2, 64, 27, 27)) * 30, 0).astype(np.float32)
    ours = LocalResponseNorm(5, 1e-4, 0.75, 2.0)(minidl.tensor(x)).data
    ref = torch.nn.LocalResponseNorm(5, 1e-4, 0.75, 2.0)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)


ADAPTIVE_CASES = [((2, 3, 13, 13), (6, 6)), ((1, 2, 7, 10), (3, 4)), ((2, 2, 5, 5), 1),
                  ((1, 2, 3, 2), (6, 5)),      # upsampling: bins repeat pixels
                  ((1, 2, 6, 6), (6, 6))]      # identity


@pytest.mark.parametrize("shape, out", ADAPTIVE_CASES, ids=str)
def test_adaptive_avg_pool_matches_naive_and_gradchecks(xp, rng, shape, out):
    x = rng.standard_normal(shape)
    oh, ow = out if isinstance(out, tuple) else (out, out)
    fn = lambda t: adaptive_avg_pool2d(t, out)  # noqa: E731
    np.testing.assert_allclose(host(fn(dev(xp, x))), naive_adaptive(x, oh, ow), rtol=1e-12,
                               atol=1e-15)
    gradcheck(fn, [dev(xp, x)])


@pytest.mark.parametrize("shape, out", ADAPTIVE_CASES, ids=str)
def test_adaptive_avg_pool_matches_torch(rng, shape, out):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal(shape)
    ref = torch.nn.functional.adaptive_avg_pool2d(torch.tensor(x), out).numpy()
    np.testing.assert_allclose(AdaptiveAvgPool2d(out)(Tensor(x)).data, ref, rtol=1e-12,
                               atol=1e-15)


def test_bins_follow_pytorchs_floor_ceil_rule():
    assert adaptive_bins(13, 6) == [(0, 3), (2, 5), (4, 7), (6, 9), (8, 11), (10, 13)]
    assert adaptive_bins(4, 4) == [(0, 1), (1, 2), (2, 3), (3, 4)]


def test_float32_stays_float32(xp, rng):
    x = dev(xp, rng.standard_normal((2, 4, 5, 5)), np.float32)
    for fn in (lambda t: local_response_norm(t, 3), lambda t: adaptive_avg_pool2d(t, 2)):
        t = Tensor(x, requires_grad=True)
        y = fn(t)
        y.sum().backward()
        assert y.dtype == np.float32 and t.grad.dtype == np.float32


def test_bad_arguments_have_clear_messages(xp):
    x = dev(xp, np.zeros((2, 3, 6, 6)))
    with pytest.raises(ValueError, match=r"local_response_norm: size must be a positive int, "
                                         r"got 0"):
        local_response_norm(x, 0)
    with pytest.raises(ValueError, match=r"local_response_norm: x must have at least 3 axes"):
        local_response_norm(dev(xp, np.zeros((2, 3))), 3)
    with pytest.raises(TypeError, match=r"local_response_norm: x must be floating"):
        local_response_norm(dev(xp, np.zeros((1, 2, 3)), np.int64), 3)
    with pytest.raises(ValueError, match=r"adaptive_avg_pool2d: output_size must be a positive "
                                         r"int or a pair of positive ints, got \(0, 2\)"):
        adaptive_avg_pool2d(x, (0, 2))
    with pytest.raises(ValueError, match=r"adaptive_avg_pool2d: x must be 4-D"):
        adaptive_avg_pool2d(dev(xp, np.zeros((3, 6, 6))), 2)
    with pytest.raises(ValueError, match=r"LocalResponseNorm: size must be a positive int"):
        LocalResponseNorm(-1)
    assert repr(AdaptiveAvgPool2d((6, 6))) == "AdaptiveAvgPool2d(output_size=6)"
    assert repr(LocalResponseNorm(5, k=2)) == \
        "LocalResponseNorm(5, alpha=0.0001, beta=0.75, k=2.0)"
