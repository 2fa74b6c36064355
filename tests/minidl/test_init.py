"""minidl.init: fans, He/Xavier statistics, seeding (same weights on every backend), dtypes."""
import math

import numpy as np
import pytest

from minidl import backend as B
from minidl import init

SHAPE = (200, 300)  # 60000 draws: sample moments within a few percent


def test_fans_for_dense_and_conv_weights():
    assert init.fans((10, 784)) == (784, 10)
    assert init.fans((16, 3, 5, 5)) == (75, 400)
    with pytest.raises(ValueError, match=r"fans: weight shape must have at least 2 dims, got "
                                         r"\(7,\)"):
        init.fans((7,))


@pytest.mark.parametrize("name, std", [
    ("he_normal", math.sqrt(2 / 300)), ("he_uniform", math.sqrt(2 / 300)),
    ("fan_in_uniform", math.sqrt(1 / 300) / math.sqrt(3)),
    ("xavier_normal", math.sqrt(2 / 500)), ("xavier_uniform", math.sqrt(2 / 500))])
def test_initializer_statistics(xp, name, std):
    w = getattr(init, name)(SHAPE)
    assert B.backend_of(w).xp is xp and w.shape == SHAPE and w.dtype == np.float32
    h = B.to_host(w).astype(np.float64)
    assert abs(h.mean()) < 5 * std / math.sqrt(h.size)  # 5 standard errors
    assert abs(h.std() / std - 1) < 0.02
    if name.endswith("uniform"):
        bound = std * math.sqrt(3)  # U(-b, b) has std b / sqrt(3)
        assert h.min() >= -bound and h.max() <= bound
        assert h.min() < -0.99 * bound and h.max() > 0.99 * bound
    else:  # normal: about 4.55% beyond 2 std
        assert abs((np.abs(h) > 2 * std).mean() - 0.0455) < 0.005


def test_conv_shaped_weights_use_the_receptive_field(xp):
    h = B.to_host(init.he_normal((32, 8, 3, 3))).astype(np.float64)
    assert abs(h.std() / math.sqrt(2 / 72) - 1) < 0.03


def test_uniform_zeros_ones_and_dtype(xp):
    u = B.to_host(init.uniform((1000,), 0.5, dtype=np.float64))
    assert u.dtype == np.float64 and -0.5 <= u.min() and u.max() <= 0.5
    z, o = init.zeros((2, 3)), init.ones((2, 3), dtype=np.float64)
    assert B.backend_of(z).xp is xp and z.dtype == np.float32 and o.dtype == np.float64
    np.testing.assert_array_equal(B.to_host(z), 0.0)
    np.testing.assert_array_equal(B.to_host(o), 1.0)
    B.set_default_dtype(np.float64)
    assert init.he_uniform((3, 4)).dtype == np.float64


def test_seed_gives_the_same_weights_on_every_backend(backend):
    B.seed(42)
    a = B.to_host(init.he_normal((5, 6)))
    with B.use_backend("numpy"):
        B.seed(42)
        b = init.he_normal((5, 6))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, B.to_host(init.he_normal((5, 6))))
