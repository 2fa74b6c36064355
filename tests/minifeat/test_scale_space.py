import math

import numpy as np
import pytest

from minidl import backend as B
from minifeat.scale_space import build_scale_space, n_octaves_for, sigma_schedule, upsample2x


def test_incremental_blurs_compose_to_the_schedule():
    sig = sigma_schedule(1.6, 3)
    total = 1.6
    for s in range(1, 6):
        total = math.sqrt(total ** 2 + sig[s] ** 2)
        assert abs(total - 1.6 * 2 ** (s / 3)) < 1e-9


def test_upsample_matches_opencv_inter_linear(rng):
    cv2 = pytest.importorskip("cv2")
    a = rng.random((37, 53)).astype(np.float32)
    want = cv2.resize(a, (106, 74), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(upsample2x(a), want, atol=1e-6)


def test_pyramid_shapes_and_dog(xp, rng):
    img = xp.asarray(rng.random((40, 64)).astype(np.float32))
    ss = build_scale_space(img)
    # OpenCV's rule gives 5 octaves; the 5th (5x8 pixels) is dropped: too small for extrema
    assert len(ss.gaussians) == n_octaves_for((40, 64)) == 4
    assert ss.gaussians[0].shape == (6, 80, 128) and ss.dogs[0].shape == (5, 80, 128)
    assert ss.gaussians[1].shape == (6, 40, 64)
    g0 = B.to_host(ss.gaussians[0])
    np.testing.assert_allclose(B.to_host(ss.dogs[0]), g0[1:] - g0[:-1], atol=1e-7)
    # each next octave starts from image S of the previous one, every other pixel
    np.testing.assert_array_equal(B.to_host(ss.gaussians[1][0]), g0[3][::2, ::2])
