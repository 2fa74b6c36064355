"""minifeat's input contract (minifeat.io.as_image), case by case from issue 21 item 2: each
test failed on the code before the contract (wrong answers without a word, or a traceback).

Synthetic images here; the real-photo checks need MINIDL_DATA (skipped with the reason)."""
import warnings

import numpy as np
import pytest
from PIL import Image

from minidl import backend as B
from minifeat import (DenseSIFT, SIFT, blob_dog, blob_doh, blob_log, corner_harris, corner_peaks,
                      corner_shi_tomasi, edges_canny, gaussian_blur, image_gradients, load_image,
                      ransac_homography)
from minifeat.io import LowBitDepthWarning, as_image


def _scene(n=96, seed=3):
    """A float32 (n, n) image in [0, 1] with corners, edges and blobs: smoothed blocks."""
    rng = np.random.default_rng(seed)
    a = np.kron(rng.random((n // 8, n // 8)), np.ones((8, 8)))
    return np.clip(gaussian_blur(a.astype(np.float32), 1.0), 0, 1).astype(np.float32)


def _same_keypoints(a, b):
    assert len(a) == len(b) > 0
    np.testing.assert_allclose(B.to_host(a.x), B.to_host(b.x), atol=1e-4)
    np.testing.assert_allclose(B.to_host(a.y), B.to_host(b.y), atol=1e-4)


# --------------------------------------------------------------------------- float 0..255

def test_float_image_in_0_255_is_refused_with_the_scaling_to_use(xp):
    """Before: 5,257 SIFT keypoints instead of 2,666 for a float photo in 0..255, no word."""
    img = xp.asarray(_scene() * 255)
    for call in (lambda: SIFT().detect(img), lambda: SIFT().detect_and_compute(img),
                 lambda: edges_canny(img), lambda: corner_harris(img), lambda: blob_log(img),
                 lambda: DenseSIFT().compute(img[None])):
        with pytest.raises(ValueError, match=r"float image with values up to 2\d\d(\.\d+)?, "
                                             r"expected \[0, 1\]: pass image / 255"):
            call()
    # the explicit argument says how to scale, and gives the result of the scaled image
    _same_keypoints(SIFT().detect(img, max_value=255), SIFT().detect(img / 255))


# --------------------------------------------------------------------------- 12-bit uint16

def test_uint16_with_12_bit_data_warns_and_max_value_scales_by_its_depth(xp):
    """Before: 12-bit data stored as uint16 gave 0 SIFT keypoints, no word."""
    scene = _scene()
    twelve = xp.asarray(np.round(scene * 4095).astype(np.uint16))
    with pytest.warns(LowBitDepthWarning, match=r"`image` is uint16 but its largest value is "
                                                r"\d+ \(12 bits or fewer\).*max_value=4095"):
        SIFT().detect(twelve)
    assert issubclass(LowBitDepthWarning, UserWarning)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        kp = SIFT().detect(twelve, max_value=4095)           # asked: no warning
        full = as_image(xp.asarray(np.round(scene * 65535).astype(np.uint16)))  # 16 bits: none
    _same_keypoints(kp, SIFT().detect(xp.asarray(np.round(scene * 4095) / 4095)))
    assert float(full.max()) > 0.9


# --------------------------------------------------------------------------- BGR

def test_bgr_option_equals_rgb_of_the_swapped_array(xp, rng):
    """Before: a BGR array from cv2.imread was taken as RGB, and there was no option."""
    grey = _scene()
    rgb = np.stack([grey, np.clip(grey * 0.5 + rng.random(grey.shape) * 0.3, 0, 1),
                    1 - grey], axis=2).astype(np.float32)
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    a = as_image(xp.asarray(rgb))
    b = as_image(xp.asarray(bgr), channel_order="bgr")
    np.testing.assert_array_equal(B.to_host(a), B.to_host(b))
    assert not np.array_equal(B.to_host(as_image(xp.asarray(bgr))), B.to_host(a))
    _same_keypoints(SIFT().detect(xp.asarray(bgr), channel_order="bgr"),
                    SIFT().detect(xp.asarray(rgb)))
    u8 = np.round(rgb * 255).astype(np.uint8)
    bgra = np.concatenate([u8[..., ::-1], np.full(u8.shape[:2] + (1,), 255, np.uint8)], 2)
    np.testing.assert_array_equal(B.to_host(edges_canny(xp.asarray(bgra), channel_order="bgr")),
                                  B.to_host(edges_canny(xp.asarray(u8))))
    with pytest.raises(ValueError, match="`channel_order` must be 'rgb' or 'bgr', got 'BGR!'"):
        as_image(xp.asarray(rgb), channel_order="BGR!")


# --------------------------------------------------------------------------- NaN

def test_one_nan_pixel_is_refused_with_its_count(xp):
    """Before: one NaN made Harris find 0 corners and SIFT lose 18% of its keypoints, with 2 NaN
    descriptors, without a warning."""
    img = _scene()
    img[40, 40] = np.nan
    img = xp.asarray(img)
    for call in (lambda: SIFT().detect_and_compute(img), lambda: corner_harris(img),
                 lambda: corner_shi_tomasi(img), lambda: edges_canny(img),
                 lambda: blob_doh(img), lambda: DenseSIFT().compute(img[None])):
        with pytest.raises(ValueError, match=r"has 1 non-finite pixel value\(s\) \(NaN or inf\) "
                                             r"of 9216.*nonfinite='zero'"):
            call()
    two = _scene()
    two[1, 2], two[3, 4] = np.inf, -np.inf
    with pytest.raises(ValueError, match=r"`image` has 2 non-finite"):
        as_image(xp.asarray(two))
    kp, desc = SIFT().detect_and_compute(img, nonfinite="zero")  # the explicit option
    assert len(kp) > 0 and bool(B.get_array_module(desc).isfinite(desc).all())


# --------------------------------------------------------------------------- file paths

def test_file_paths_str_and_pathlib_are_accepted_wherever_an_image_is(xp, tmp_path):
    """Before: SIFT.detect_and_compute("photo.jpg") said "must be a file path or an array...,
    got str"."""
    scene = _scene()
    path = tmp_path / "scene.png"
    Image.fromarray(np.round(scene * 255).astype(np.uint8)).save(path)
    arr = load_image(path)
    for p in (str(path), path):
        kp, desc = SIFT().detect_and_compute(p)
        ref_kp, ref_desc = SIFT().detect_and_compute(arr)
        _same_keypoints(kp, ref_kp)
        assert desc.shape == ref_desc.shape
        assert int(B.to_host(edges_canny(p)).sum()) == int(B.to_host(edges_canny(arr)).sum())
        np.testing.assert_array_equal(B.to_host(corner_peaks(corner_harris(p))),
                                      B.to_host(corner_peaks(corner_harris(arr))))
        assert blob_dog(p).shape == blob_dog(arr).shape
        np.testing.assert_array_equal(B.to_host(gaussian_blur(p, 2.0)),
                                      B.to_host(gaussian_blur(arr, 2.0)))
        np.testing.assert_array_equal(B.to_host(image_gradients(p)[0]),
                                      B.to_host(image_gradients(arr)[0]))
    with pytest.raises(FileNotFoundError, match="image file not found: '.*missing.png'"):
        SIFT().detect(str(tmp_path / "missing.png"))


def test_a_photo_path_gives_what_the_loaded_array_gives(images_dir):
    path = images_dir / "box.png"
    kp = SIFT().detect(str(path))
    assert len(kp) > 100
    _same_keypoints(kp, SIFT().detect(load_image(path)))
    with pytest.raises(ValueError, match="pass image / 255"):
        SIFT().detect(B.to_host(load_image(path)) * 255)


# --------------------------------------------------------------------------- tiny, constant

@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (2, 2)], ids=str)
def test_tiny_and_constant_images_give_empty_results(xp, shape):
    """Before: a 1x1 image raised ValueError (SIFT: at least 2x2; Canny, Harris, blobs: at
    least 3x3) where OpenCV returns no keypoints."""
    for img in (xp.zeros(shape, xp.float32), xp.full((64, 48), 0.5, xp.float32),
                xp.asarray(np.full(shape, 200, np.uint8))):
        kp, desc = SIFT().detect_and_compute(img)
        assert len(kp) == 0 and desc.shape == (0, 128) and desc.dtype == np.float32
        assert len(SIFT().detect(img)) == 0
        edges = B.to_host(edges_canny(img))
        assert edges.shape == tuple(img.shape) and not edges.any()
        assert B.to_host(corner_peaks(corner_harris(img))).shape == (0, 2)
        assert B.to_host(corner_peaks(corner_shi_tomasi(img))).shape == (0, 2)
        for blob in (blob_log, blob_dog, blob_doh):
            assert B.to_host(blob(img)).shape == (0, 3)


# --------------------------------------------------------------------------- other dtypes

def test_integer_dtypes_without_an_image_range_are_refused_unless_scaled(xp):
    img = xp.asarray(np.round(_scene() * 255).astype(np.int64))
    with pytest.raises(TypeError, match=r"`image` has dtype int64, which has no image value "
                                        r"range.*max_value"):
        SIFT().detect(img)
    np.testing.assert_allclose(B.to_host(as_image(img, max_value=255)),
                               B.to_host(as_image(img.astype(xp.uint8))), atol=1e-7)
    with pytest.raises(ValueError, match=r"`max_value` must be a finite number > 0 or None, "
                                         r"got 0"):
        as_image(img, max_value=0)


def test_a_float32_image_in_range_is_not_copied():
    """The checks read the array; a float32 (H, W) image in [0, 1] is used as it is (NumPy:
    the same object; the strict backend re-wraps every result, so it is not checked there)."""
    img = _scene()
    assert as_image(img) is img


# --------------------------------------------------------------------------- ransac

def test_ransac_homography_with_nan_points_names_the_argument_and_the_count(xp, rng):
    """Before: NaN points raised numpy.linalg.LinAlgError "SVD did not converge"."""
    src = rng.uniform(0, 100, (30, 2))
    dst = src + 5.0
    bad = src.copy()
    bad[[3, 7], 0] = np.nan
    with pytest.raises(ValueError, match=r"ransac_homography: `src` has 2 point\(s\) with a NaN "
                                         r"or inf coordinate \(of 30\)"):
        ransac_homography(xp.asarray(bad), xp.asarray(dst))
    bad_dst = dst.copy()
    bad_dst[0, 1] = np.inf
    with pytest.raises(ValueError, match=r"`dst` has 1 point\(s\) with a NaN or inf"):
        ransac_homography(xp.asarray(src), xp.asarray(bad_dst))
    H, inliers = ransac_homography(xp.asarray(src), xp.asarray(dst))
    assert H is not None and bool(inliers.all())
