"""minidl.visualize: filter and feature-map grids (shapes, scaling), saliency against a central
finite-difference estimate in float64, Grad-CAM against its formula, capture."""
import numpy as np
import pytest
from PIL import Image

import minidl
from minidl import layers as L
from minidl import visualize as V


def test_filter_grid_grey_shape_and_symmetric_scaling():
    W = np.zeros((5, 1, 3, 3), np.float32)
    W[0, 0, 0, 0], W[0, 0, 1, 1] = 2.0, -1.0      # max|w| = 2: 2 -> white, -1 -> 1/4 grey
    W[1, 0] = -0.5                                  # all negative: black everywhere
    # W[2:] stay zero: grey, no division by zero
    img = V.filter_grid(W, zoom=2, border=1)
    assert img.dtype == np.uint8 and img.ndim == 2
    # 5 filters -> 3 columns, 2 rows of 6x6 tiles with 1-pixel borders
    assert img.shape == (2 * 7 + 1, 3 * 7 + 1)
    tile0 = img[1:7, 1:7]
    assert tile0[0, 0] == 255 and tile0[1, 1] == 255            # a 2x2 block per weight
    assert tile0[2, 2] == round(255 * (0.5 - 0.25))             # -1 of 2 -> 0.25
    assert tile0[0, 2] == 128                                    # zero weight -> grey
    assert (img[1:7, 8:14] == 0).all()                           # -0.5 of 0.5 -> black
    assert (img[1:7, 15:21] == 128).all()                        # zero filter -> grey
    assert (img[0] == 255).all() and (img[:, 0] == 255).all()    # the border


def test_filter_grid_rgb_each_filter_scaled_on_its_own(rng):
    W = rng.standard_normal((4, 3, 5, 5))
    W[1] *= 100.0                                   # a louder filter looks the same
    img = V.filter_grid(W, zoom=1, border=0, cols=4)
    assert img.shape == (5, 20, 3)
    tiles = img.reshape(5, 4, 5, 3).transpose(1, 0, 2, 3)
    for k in range(4):
        expected = np.rint((0.5 + 0.5 * W[k] / np.abs(W[k]).max()) * 255).transpose(1, 2, 0)
        np.testing.assert_array_equal(tiles[k], expected.astype(np.uint8))
    assert {img.max(), img.min()} & {255, 0}       # each filter reaches an extreme


def test_filter_grid_refuses_other_shapes():
    with pytest.raises(ValueError, match="1 \\(grey\\) or 3 \\(RGB\\) input channels, got 2"):
        V.filter_grid(np.zeros((4, 2, 3, 3)))
    with pytest.raises(ValueError, match="out_channels, in_channels, KH, KW"):
        V.filter_grid(np.zeros((4, 3, 3)))


def test_feature_map_grid_shape_and_per_map_scaling(rng):
    maps = rng.random((10, 7, 9)).astype(np.float32)
    maps[3] = 5.0                                   # constant map: black, no NaN
    maps[4] *= 1000
    img = V.feature_map_grid(maps, zoom=2, border=1)
    assert img.dtype == np.uint8
    assert img.shape == (3 * 15 + 1, 4 * 19 + 1)    # 10 maps -> 4 columns, 3 rows
    for k in (0, 4):
        r, c = divmod(k, 4)
        t = img[1 + r * 15:1 + r * 15 + 14, 1 + c * 19:1 + c * 19 + 18]
        assert t.min() == 0 and t.max() == 255
    assert (img[1 + 0:15, 1 + 3 * 19:3 * 19 + 19] == 0).all()
    assert V.feature_map_grid(maps, max_maps=4, border=0).shape == (2 * 7, 2 * 9)
    with pytest.raises(ValueError, match="\\(C, H, W\\) for one image"):
        V.feature_map_grid(maps[None])


def _small_net(dtype=np.float64):
    minidl.seed(3)
    net = L.Sequential(L.Conv2d(2, 4, 3, padding=1), L.Tanh(), L.MaxPool2d(2),
                       L.Conv2d(4, 3, 3), L.Tanh(), L.Flatten(), L.Linear(3 * 2 * 2, 5))
    for p in net.parameters():
        p.data = p.data.astype(dtype)
    return net.eval()


def test_saliency_equals_central_finite_differences(rng):
    net = _small_net()
    x = rng.standard_normal((2, 8, 8))
    c, h = 3, 1e-6
    g = V.input_gradient(net, x, c)
    assert g.shape == x.shape and g.dtype == np.float64
    fd = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        fd[i] = (V.predict(net, x + e)[c] - V.predict(net, x - e)[c]) / (2 * h)
    np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(V.saliency(net, x[None], c), np.abs(fd).max(axis=0),
                               rtol=1e-6, atol=1e-9)
    assert all(p.grad is None for p in net.parameters())     # the weights were left alone


def test_saliency_checks_its_arguments(rng):
    net = _small_net()
    with pytest.raises(ValueError, match="class_index must be an int in \\[0, 5\\)"):
        V.saliency(net, rng.standard_normal((2, 8, 8)), 5)
    with pytest.raises(ValueError, match="one image"):
        V.saliency(net, rng.standard_normal((2, 2, 8, 8)), 0)


def test_grad_cam_follows_its_formula(rng):
    net = _small_net()
    x = rng.standard_normal((2, 8, 8))
    cam = V.grad_cam(net, x, 1, "1")              # the first Tanh's maps (1, 4, 8, 8)
    assert cam.shape == (8, 8) and cam.min() >= 0 and cam.max() <= 1
    # the same from the definition, with the gradient w.r.t. the maps by the chain rule
    with V.capture(net, ["1"]) as seen:
        V.predict(net, x)
    A = seen["1"].data[0]
    rest = net[2:]
    gA = V.input_gradient(rest, A, 1)
    ref = np.maximum((gA.mean(axis=(1, 2))[:, None, None] * A).sum(axis=0), 0)
    np.testing.assert_allclose(cam, ref / ref.max(), rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="no sub-module named \\['nope'\\]"):
        V.grad_cam(net, x, 1, "nope")


def test_capture_restores_the_modules(rng):
    net = _small_net()
    with V.capture(net, ["0", "3"]) as seen:
        V.predict(net, rng.standard_normal((2, 8, 8)))
    assert seen["0"].shape == (1, 4, 8, 8) and seen["3"].shape == (1, 3, 2, 2)
    assert "forward" not in vars(net[0])


def test_heat_overlay_and_save_png(tmp_path):
    img = np.linspace(0, 1, 20 * 30).reshape(20, 30)
    heat = np.zeros((5, 5))
    heat[2, 2] = 1.0
    out = V.heat_overlay(img, heat)
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    centre, corner = out[10, 15].astype(int), out[0, 0].astype(int)
    assert centre[0] > centre[2] + 100 and abs(corner[0] - corner[2]) < 3   # red only there
    path = V.save_png(out, tmp_path / "o.png", scale=2)
    with Image.open(path) as im:
        assert im.size == (60, 40)
