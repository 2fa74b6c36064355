"""minidl.functions.batchnorm_pool: batch_norm_max_pool2d against max_pool2d(batch_norm(...))
-- values bit for bit, running statistics, gradients, float64 gradchecks in training and
evaluation, negative gamma, errors -- under every backend."""
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


def _inputs(rng, C=4, shape=(3, 4, 6, 8)):
    x = rng.standard_normal(shape) * 2 + 1
    gamma = rng.uniform(0.5, 2, C)
    gamma[1] = -0.7   # a channel whose normalising map reverses the order: it pools -x
    return x, gamma, rng.standard_normal(C)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine, relu", [(True, False), (False, False), (True, True)])
def test_same_values_running_stats_and_gradients_as_the_separate_ops(xp, rng, dtype, training,
                                                                     affine, relu):
    x, gamma, beta = _inputs(rng)
    gy = rng.standard_normal((3, 4, 3, 4))
    runs = []
    for fused in (True, False):
        rm, rv = dev(xp, np.full(4, 0.5), dtype), dev(xp, np.full(4, 2.0), dtype)
        ts = [Tensor(dev(xp, a, dtype), requires_grad=True)
              for a in ((x, gamma, beta) if affine else (x,))]
        args = (ts[0], rm, rv) + ((ts[1], ts[2]) if affine else (None, None))
        if fused:
            y = F.batch_norm_max_pool2d(*args, training=training, relu=relu)
            assert type(y.creator).__name__ == "BatchNormMaxPool"
        else:
            y = F.max_pool2d(F.batch_norm(*args, training=training), 2)
            y = F.relu(y) if relu else y
        y.backward(dev(xp, gy, dtype))
        runs.append([host(y), host(rm), host(rv)] + [host(t.grad) for t in ts])
    (yf, rmf, rvf, *gf), (yu, rmu, rvu, *gu) = runs
    np.testing.assert_array_equal(yf, yu)          # the map of the max is the max of the map
    np.testing.assert_array_equal(rmf, rmu)
    np.testing.assert_array_equal(rvf, rvu)
    tol = 1e-12 if dtype == np.float64 else 2e-6   # sums taken in another order
    for a, b in zip(gf, gu):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * np.abs(b).max())


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("relu", [False, True])
def test_gradcheck(xp, rng, training, relu):
    minidl.set_default_dtype(np.float64)
    x, gamma, beta = _inputs(rng, C=3, shape=(2, 3, 4, 6))
    mean, var = dev(xp, rng.standard_normal(3)), dev(xp, rng.uniform(0.5, 2, 3))
    gradcheck(lambda *t: F.batch_norm_max_pool2d(t[0], None if training else mean,
                                                  None if training else var, t[1], t[2],
                                                  training=training, relu=relu),
              [dev(xp, x), dev(xp, gamma), dev(xp, beta)])


def test_errors_name_the_op_and_the_argument(xp, rng):
    x = dev(xp, rng.standard_normal((2, 3, 5, 6)))
    with pytest.raises(ValueError, match=r"batch_norm_max_pool2d: x must be \(N, C, H, W\) "
                                         r"with H and W even.*\(2, 3, 5, 6\)"):
        F.batch_norm_max_pool2d(x, training=True)
    with pytest.raises(ValueError, match="batch_norm_max_pool2d: x must be .* even"):
        F.batch_norm_max_pool2d(dev(xp, rng.standard_normal((2, 3, 4))), training=True)
    with pytest.raises(ValueError, match="batch_norm_max_pool2d: gamma must have shape"):
        F.batch_norm_max_pool2d(dev(xp, rng.standard_normal((2, 3, 4, 4))), None, None,
                                dev(xp, np.ones(4)), dev(xp, np.zeros(4)), training=True)
    with pytest.raises(ValueError, match="batch_norm_max_pool2d: running_mean is required"):
        F.batch_norm_max_pool2d(dev(xp, rng.standard_normal((2, 3, 4, 4))))
