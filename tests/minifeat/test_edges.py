"""Tests for minifeat.edges: Sobel/Scharr gradients and Canny, on every backend."""
import numpy as np
import pytest

from minidl.backend import to_host
from minifeat.edges import (_hysteresis, edges_canny, gradient_magnitude, gradient_scharr,
                            gradient_sobel)


def _step(shape=(24, 32), col=15, contrast=1.0):
    im = np.zeros(shape)
    im[:, col:] = contrast
    return im


@pytest.mark.parametrize("grad", [gradient_sobel, gradient_scharr])
def test_gradient_of_a_ramp_is_its_slope(xp, grad):
    yy, xx = np.mgrid[:9, :11]
    gx, gy = grad(xp.asarray(3.0 * xx - 2.0 * yy))
    np.testing.assert_allclose(to_host(gx)[1:-1, 1:-1], 3.0, atol=1e-12)
    np.testing.assert_allclose(to_host(gy)[1:-1, 1:-1], -2.0, atol=1e-12)


def test_sobel_is_scipy_sobel_over_8(xp, rng):
    import scipy.ndimage as ndi
    im = rng.random((16, 20))
    gx, gy = gradient_sobel(xp.asarray(im))
    np.testing.assert_allclose(to_host(gx), ndi.sobel(im, axis=1, mode="nearest") / 8, atol=1e-12)
    np.testing.assert_allclose(to_host(gy), ndi.sobel(im, axis=0, mode="nearest") / 8, atol=1e-12)
    mag = to_host(gradient_magnitude(xp.asarray(im)))
    np.testing.assert_allclose(mag, np.hypot(to_host(gx), to_host(gy)))


def test_scharr_is_opencv_scharr_over_32(xp, rng):
    cv2 = pytest.importorskip("cv2")
    im = rng.random((16, 20)).astype(np.float32)
    gx, gy = gradient_scharr(xp.asarray(im))
    for g, (dx, dy) in ((gx, (1, 0)), (gy, (0, 1))):
        ref = cv2.Scharr(im, cv2.CV_32F, dx, dy, borderType=cv2.BORDER_REPLICATE) / 32
        np.testing.assert_allclose(to_host(g), ref, atol=1e-5)


def test_integer_images_become_float32(xp):
    gx, _ = gradient_sobel(xp.asarray(_step().astype(np.uint8)))
    assert gx.dtype == np.float32


@pytest.mark.parametrize("transpose", [False, True])
def test_canny_step_gives_one_pixel_wide_line_at_the_step(xp, transpose):
    im = _step()
    if transpose:
        im = im.T
    e = to_host(edges_canny(xp.asarray(im)))
    if transpose:
        e = e.T
    assert e.dtype == bool
    # exactly one column, the last dark one (ties are broken towards the negative side),
    # on every row but the always-empty one-pixel border
    assert np.nonzero(e.any(axis=0))[0].tolist() == [14]
    assert e[1:-1, 14].all() and e.sum() == im.shape[0 if not transpose else 1] - 2


def test_canny_falling_step_and_diagonal(xp):
    e = to_host(edges_canny(xp.asarray(1.0 - _step())))
    assert np.nonzero(e.any(axis=0))[0].tolist() == [14]
    yy, xx = np.mgrid[:32, :32]
    e = to_host(edges_canny(xp.asarray((xx > yy).astype(float))))
    ys, xs = np.nonzero(e)
    # the ideal edge runs between pixels (y, y) and (y, y + 1); both are maxima along the
    # diagonal gradient, so the line is a thin staircase, as with scikit-image (59 pixels)
    assert len(ys) >= 50 and set((xs - ys).tolist()) == {0, 1}
    assert np.bincount(ys).max() <= 2


def test_hysteresis_keeps_weak_components_that_touch_a_strong_pixel(xp):
    weak = np.zeros((21, 21), bool)
    for r in range(1, 20, 4):            # a long serpentine path: rows joined at alternate ends
        weak[r, 1:20] = True
        if r + 4 < 20:
            c = 19 if (r // 4) % 2 == 0 else 1
            weak[r:r + 5, c] = True
    weak[3, 3] = weak[4, 4] = True       # attached diagonally (8-connectivity)
    island = np.zeros_like(weak)
    island[7, 8:12] = True               # in a gap of the serpentine, not touching it
    assert not (weak & island).any()
    strong = np.zeros_like(weak)
    strong[17, 1] = True                 # at the far end of the path
    kept = to_host(_hysteresis(xp, xp.asarray(weak | island), xp.asarray(strong)))
    np.testing.assert_array_equal(kept, weak)
    none = to_host(_hysteresis(xp, xp.asarray(weak), xp.asarray(np.zeros_like(weak))))
    assert not none.any()


def test_hysteresis_equals_connected_component_labelling(xp, rng):
    import scipy.ndimage as ndi
    for density in (0.3, 0.45, 0.6):          # below, near and above the percolation point
        weak = rng.random((50, 61)) < density
        strong = rng.random((50, 61)) < 0.01
        kept = to_host(_hysteresis(xp, xp.asarray(weak), xp.asarray(strong)))
        labels, n = ndi.label(weak, structure=np.ones((3, 3)))
        survives = np.zeros(n + 1, bool)
        survives[labels[strong & weak]] = True
        survives[0] = False
        np.testing.assert_array_equal(kept, survives[labels])


def test_canny_drops_a_weak_step_unless_high_is_lowered(xp):
    weak_step = xp.asarray(_step(contrast=0.06))         # peak gradient about 0.019
    assert not to_host(edges_canny(weak_step, low=0.0125, high=0.05)).any()
    e = to_host(edges_canny(weak_step, low=0.0125, high=0.015))
    assert np.nonzero(e.any(axis=0))[0].tolist() == [14]


def test_canny_agrees_with_skimage_on_sudoku(xp, images_dir):
    skf = pytest.importorskip("skimage.feature")
    from PIL import Image
    from scipy.ndimage import binary_dilation
    im = np.asarray(Image.open(images_dir / "sudoku.png").convert("L"), dtype=np.float64) / 255
    ours = to_host(edges_canny(xp.asarray(im), sigma=2.0))
    ref = skf.canny(im, sigma=2.0, mode="nearest")     # its 0.1/0.2 == our 0.0125/0.025
    near = np.ones((3, 3), bool)
    exact = (ours & ref).sum() / ours.sum()
    ours_near_ref = (ours & binary_dilation(ref, near)).sum() / ours.sum()
    ref_near_ours = (ref & binary_dilation(ours, near)).sum() / ref.sum()
    # measured: 96.8% identical, 99.8% / 97.4% within 1 px, 17379 vs 17685 pixels
    assert abs(int(ours.sum()) - int(ref.sum())) < 0.05 * ref.sum()
    assert exact > 0.93 and ours_near_ref > 0.98 and ref_near_ours > 0.95


def test_canny_bad_arguments_name_them(xp):
    with pytest.raises(ValueError, match="`image` must be 2-D"):
        edges_canny(xp.zeros((8, 8, 2)))  # colour is (H, W, 3|4)
    with pytest.raises(ValueError, match="`low` must be <= `high`"):
        edges_canny(xp.zeros((8, 8)), low=0.5, high=0.1)
    with pytest.raises(ValueError, match="`sigma`"):
        edges_canny(xp.zeros((8, 8)), sigma=-1)
    with pytest.raises(TypeError, match="`image`"):
        gradient_sobel([[0.0] * 5] * 5)
    with pytest.raises(ValueError, match="`method`"):
        gradient_magnitude(xp.zeros((8, 8)), method="prewitt")
