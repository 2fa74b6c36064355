"""max_pool2d(ceil_mode=True): PyTorch's output size (GoogLeNet's pools), the values and
gradients of a naive loop over windows clipped at the edges, a float64 gradcheck under every
backend, and PyTorch parity where installed."""
import numpy as np
import pytest

import minidl
from minidl import functions as F
from minidl.autograd import Tensor
from minidl.functions.pooling import ceil_mode_extra
from minidl.testing import gradcheck

# (x shape, kernel, stride, padding, expected OH x OW): GoogLeNet's 112 -> 56, 56 -> 28,
# 28 -> 14 (3x3/2) and 14 -> 7 (2x2/2), odd sizes, padding, a last window dropped
CASES = [((1, 2, 112, 9), 3, 2, 0, (56, 4)), ((2, 3, 13, 14), 3, 2, 0, (6, 7)),
         ((1, 2, 14, 15), 2, 2, 0, (7, 8)), ((2, 2, 7, 8), 3, 2, 1, (4, 5)),
         ((1, 1, 6, 6), 2, 3, 1, (3, 3)), ((1, 2, 5, 5), 3, 1, 1, (5, 5)),
         ((1, 1, 2, 2), 3, 2, 0, (1, 1))]


def naive_ceil_pool(x, k, s, p, out_hw):
    """Windows clipped to the padded input (PyTorch's ceil-mode semantics)."""
    N, C, H, W = x.shape
    xp_ = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)), constant_values=-np.inf)
    y = np.empty((N, C) + out_hw)
    for i in range(out_hw[0]):
        for j in range(out_hw[1]):
            y[:, :, i, j] = xp_[:, :, i * s:i * s + k, j * s:j * s + k].max(axis=(2, 3))
    return y


@pytest.mark.parametrize("shape, k, s, p, out_hw", CASES, ids=str)
def test_ceil_mode_size_values_and_gradcheck(xp, rng, shape, k, s, p, out_hw):
    x = rng.permutation(np.prod(shape)).reshape(shape) / np.prod(shape)   # no ties
    y = F.max_pool2d(Tensor(xp.asarray(x), requires_grad=True), k, s, p, ceil_mode=True)
    assert y.shape[2:] == out_hw
    np.testing.assert_array_equal(minidl.to_host(y.data), naive_ceil_pool(x, k, s, p, out_hw))
    gradcheck(lambda t: F.max_pool2d(t, k, s, p, ceil_mode=True), [xp.asarray(x)])


def test_floor_mode_is_unchanged_and_ceil_mode_is_checked(rng):
    x = rng.standard_normal((1, 1, 12, 12))
    assert F.max_pool2d(x, 3, 2).shape == (1, 1, 5, 5)
    assert F.max_pool2d(x, 3, 2, ceil_mode=True).shape == (1, 1, 6, 6)
    assert ceil_mode_extra(12, 3, 2, 0) == 1 and ceil_mode_extra(13, 3, 2, 0) == 0
    with pytest.raises(TypeError, match=r"ceil_mode must be a bool, got 'yes'"):
        F.max_pool2d(x, 3, 2, ceil_mode="yes")


@pytest.mark.parametrize("shape, k, s, p, out_hw", CASES, ids=str)
def test_matches_torch_ceil_mode(rng, shape, k, s, p, out_hw):
    torch = pytest.importorskip("torch")
    x = np.maximum(rng.standard_normal(shape), 0)   # ties, as after a ReLU
    t = Tensor(x.copy(), requires_grad=True)
    y = F.max_pool2d(t, k, s, p, ceil_mode=True)
    gy = rng.standard_normal(y.shape)
    y.backward(gy)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.max_pool2d(tx, k, s, p, ceil_mode=True)
    ty.backward(torch.tensor(gy))
    assert y.shape == tuple(ty.shape)
    np.testing.assert_array_equal(y.data, ty.detach().numpy())
    np.testing.assert_allclose(t.grad, tx.grad.numpy(), rtol=0, atol=1e-12)
