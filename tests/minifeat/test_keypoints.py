"""Keypoints: the "no octave/layer" default, deriving them from size (as OpenCV's detector
assigns them), the position convention (OpenCV's +0.25 px shift of an upsampled pyramid), and
``SIFT.compute`` on plain (x, y, size, angle) keypoints against OpenCV."""
import numpy as np
import pytest

from minidl import backend as B
from minifeat import SIFT, Keypoints, load_image
from minifeat.keypoints import NO_LAYER, pyramid_levels


def _plain(kp):
    return Keypoints(kp.x, kp.y, kp.size, kp.angle)


def test_plain_keypoints_have_no_layer(xp):
    kp = Keypoints(xp.asarray([1.0, 2.0]), xp.asarray([3.0, 4.0]), xp.asarray([5.0, 6.0]))
    assert B.to_host(kp.layer).tolist() == [NO_LAYER] * 2 == [-1, -1]
    assert kp.layer.dtype == xp.int32 and kp.octave.dtype == xp.int32
    assert B.to_host(kp[xp.asarray([1])].layer).tolist() == [-1]


def test_fields_from_sequences_and_shape_errors():
    kp = Keypoints([10, 20.5], (3, 4), [2.0, 6.0], [0.0, 90.0])
    assert len(kp) == 2 and kp.x.dtype == np.float32 and kp.layer.tolist() == [-1, -1]
    np.testing.assert_array_equal(kp.xy, [[10, 3], [20.5, 4]])
    with pytest.raises(ValueError, match=r"keypoint field `x` must be 1-D \(N,\), got shape \(\)"):
        Keypoints(1.0, [2.0], [3.0])
    with pytest.raises(ValueError, match=r"keypoint field `size` must have shape \(2,\), got \(3,\)"):
        Keypoints([1.0, 2.0], [2.0, 3.0], [3.0, 4.0, 5.0])


@pytest.mark.parametrize("S,sigma,first", [(3, 1.6, -1), (4, 1.4, 0), (5, 2.0, -1)])
def test_levels_invert_the_detectors_size_formula(xp, rng, S, sigma, first):
    # size = 2 sigma 2^(o + (l + xi) / S), l in 1..S, |xi| < 0.5 (as the detector reports)
    n = 2000
    o = rng.integers(first, first + 5, n)
    layer = rng.integers(1, S + 1, n)
    xi = rng.uniform(-0.499, 0.499, n)
    size = (2 * sigma * 2.0 ** (o + (layer + xi) / S)).astype(np.float32)
    z = np.zeros(n, np.float32)
    kp = Keypoints(xp.asarray(z), xp.asarray(z), xp.asarray(size))
    got_o, got_l = pyramid_levels(kp, sigma, S, first, 5)
    np.testing.assert_array_equal(B.to_host(got_o), o)
    np.testing.assert_array_equal(B.to_host(got_l), layer)


def test_known_levels_are_kept_and_sizes_beyond_the_pyramid_clamped(xp):
    size = xp.asarray([3.2, 3.2, 0.05, 4000.0, 3.2])
    z = xp.zeros(5, xp.float32)
    kp = Keypoints(z, z, size, octave=xp.asarray([2, 0, 0, 0, 9]),
                   layer=xp.asarray([3, -1, -1, -1, 1]))
    o, layer = (B.to_host(a).tolist() for a in pyramid_levels(kp, 1.6, 3, -1, 4))
    # kept; size 2 sigma -> octave 0 layer 0 = octave -1 layer 3; too small: the first
    # octave's least blurred image; too large: the last octave's most blurred; octave 9 is
    # outside the 4 octaves -1..2, so it is derived again
    assert o == [2, -1, -1, 2, -1] and layer == [3, 3, 0, 5, 3]


def test_to_opencv_packs_unknown_levels_as_a_bare_keypoint():
    cv2 = pytest.importorskip("cv2")
    kp = Keypoints(np.array([5.0, 6.0]), np.array([7.0, 8.0]), np.array([3.0, 4.0]),
                   octave=np.array([0, -1]), layer=np.array([-1, 2]))
    cvk = kp.to_opencv()
    assert cvk[0].octave == cv2.KeyPoint(5.0, 7.0, 3.0).octave == 0
    assert cvk[1].octave == (255 | (2 << 8))


def test_positions_carry_the_upsampled_pyramids_quarter_pixel(rng):
    # a Gaussian blob centred at (cx, cy) on the pixel-centre grid: upsampled SIFT reports
    # it 0.25 px right and below (as OpenCV); centred() undoes that; no upsampling, no shift
    yy, xx = np.mgrid[0:96, 0:96]
    shift = {True: [], False: []}
    for _ in range(6):
        cy, cx = rng.uniform(42, 54, 2)
        img = (0.2 + 0.6 * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 32.0)).astype(np.float32)
        for up in (True, False):
            kp = SIFT(upsample=up).detect(img)
            c = kp.centred(0.25 if up else 0.0)
            i = np.argmin(np.hypot(c[:, 0] - cx, c[:, 1] - cy))
            shift[up].append((kp.x[i] - cx, kp.y[i] - cy, c[i, 0] - cx, c[i, 1] - cy))
    up, flat = np.mean(shift[True], axis=0), np.mean(shift[False], axis=0)
    np.testing.assert_allclose(up[:2], 0.25, atol=0.02)
    np.testing.assert_allclose(up[2:], 0.0, atol=0.02)
    np.testing.assert_allclose(flat, 0.0, atol=0.02)


def test_compute_of_plain_keypoints_equals_compute_with_their_levels(xp):
    img = np.random.default_rng(1).random((90, 110)).astype(np.float32)
    img = xp.asarray(img)
    sift = SIFT()
    kp, d = sift.detect_and_compute(img)
    assert len(kp) > 20
    np.testing.assert_array_equal(B.to_host(sift.compute(img, _plain(kp))), B.to_host(d))


@pytest.mark.data
@pytest.mark.parametrize("name", ["box.png", "butterfly.jpg"])
def test_compute_of_plain_opencv_keypoints_matches_opencv(images_dir, name):
    cv2 = pytest.importorskip("cv2")
    g = cv2.imread(str(images_dir / name), cv2.IMREAD_GRAYSCALE)
    ckp, cdesc = cv2.SIFT_create().detectAndCompute(g, None)
    full = Keypoints.from_opencv(ckp)
    o, layer = pyramid_levels(_plain(full), 1.6, 3, -1, None)
    np.testing.assert_array_equal(o, full.octave)  # the detector's own levels, every one
    np.testing.assert_array_equal(layer, full.layer)
    ours = B.to_host(SIFT().compute(load_image(images_dir / name), _plain(full)))
    c = cdesc / np.linalg.norm(cdesc, axis=1, keepdims=True)
    cos = (ours * c).sum(axis=1)
    assert np.median(cos) >= 0.999 and np.percentile(cos, 5) >= 0.99, np.median(cos)
