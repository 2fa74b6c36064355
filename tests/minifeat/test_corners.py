"""Tests for minifeat.corners: Harris, Shi-Tomasi and corner_peaks, on every backend."""
import numpy as np
import pytest

from minidl.backend import to_host
from minifeat.corners import corner_harris, corner_peaks, corner_shi_tomasi, structure_tensor


def _square(n=48, lo=12, hi=36):
    im = np.zeros((n, n))
    im[lo:hi, lo:hi] = 1.0
    return im


def _near(a, b, tol):
    """Fraction of the points ``a`` (K, 2) within ``tol`` (Euclidean) of some point of ``b``."""
    a, b = np.asarray(a, float).reshape(-1, 2), np.asarray(b, float).reshape(-1, 2)
    if len(a) == 0 or len(b) == 0:
        return 0.0
    d = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)).min(axis=1)
    return float((d <= tol).mean())


def _load(images_dir, name, shrink=1):
    from PIL import Image
    im = Image.open(images_dir / name).convert("L")
    if shrink > 1:
        im = im.resize((im.width // shrink, im.height // shrink), Image.BILINEAR)
    return np.asarray(im, dtype=np.float64) / 255


@pytest.mark.parametrize("detector", [corner_harris, corner_shi_tomasi])
def test_white_square_has_exactly_four_corners_at_its_corners(xp, detector):
    response = detector(xp.asarray(_square()))
    coords = to_host(corner_peaks(response, min_distance=3, threshold_rel=0.1))
    assert coords.shape == (4, 2) and coords.dtype == np.int64
    # the square's corners lie between pixels 11|12 and 35|36
    truth = np.array([[11.5, 11.5], [11.5, 35.5], [35.5, 11.5], [35.5, 35.5]])
    d = np.abs(coords[:, None, :] - truth[None]).max(-1).min(axis=1)
    assert d.max() <= 1.0


def test_harris_is_negative_on_edges_and_zero_on_flat(xp):
    r = to_host(corner_harris(xp.asarray(_square())))
    assert r[24, 12] < 0 and r[12, 24] < 0          # middle of the sides
    assert abs(r[24, 24]) < 1e-12 and abs(r[2, 2]) < 1e-12
    st = to_host(corner_shi_tomasi(xp.asarray(_square())))
    assert st.min() > -1e-12 and abs(st[24, 12]) < 1e-3 * st.max()


def test_structure_tensor_of_a_ramp(xp):
    yy, xx = np.mgrid[:12, :12]
    # an image in [0, 1] (minifeat's input contract): slopes 0.02 and 0.01 per pixel
    a, b, c = (to_host(t) for t in structure_tensor(xp.asarray(0.02 * xx + 0.01 * yy)))
    np.testing.assert_allclose([a[6, 6], b[6, 6], c[6, 6]], [4e-4, 1e-4, 2e-4], atol=1e-13)


def test_corner_peaks_min_distance_thresholds_and_num_peaks(xp):
    r = np.zeros((30, 30))
    r[10, 10], r[10, 13], r[20, 20], r[5, 25] = 5.0, 4.0, 3.0, 0.5
    r[25, 5] = r[25, 6] = 2.0                         # a plateau of two equal pixels
    coords = lambda **kw: to_host(corner_peaks(xp.asarray(r), exclude_border=False, **kw))
    got = coords(min_distance=1)
    assert got.tolist() == [[10, 10], [10, 13], [20, 20], [25, 5], [5, 25]]   # strongest first
    assert [10, 13] not in coords(min_distance=3).tolist()
    assert [10, 13] in coords(min_distance=2).tolist()                        # 3 px apart
    assert coords(min_distance=1, threshold_rel=0.7).tolist() == [[10, 10], [10, 13]]
    assert coords(min_distance=1, threshold_abs=2.5).tolist() == [[10, 10], [10, 13], [20, 20]]
    assert coords(min_distance=1, num_peaks=2).tolist() == [[10, 10], [10, 13]]
    border = to_host(corner_peaks(xp.asarray(r), min_distance=6))             # border 6 px
    assert [5, 25] not in border.tolist() and [10, 10] in border.tolist()
    assert to_host(corner_peaks(xp.zeros((9, 9)))).shape == (0, 2)


@pytest.mark.parametrize("ours,name", [(corner_harris, "harris"),
                                       (corner_shi_tomasi, "shi_tomasi")])
@pytest.mark.parametrize("image,shrink", [("chessboard.png", 6), ("sudoku.png", 1)])
def test_corners_agree_with_skimage_on_real_images(xp, images_dir, ours, name, image, shrink):
    skf = pytest.importorskip("skimage.feature")
    im = _load(images_dir, image, shrink)
    got = to_host(corner_peaks(ours(xp.asarray(im)), min_distance=5, threshold_rel=0.05))
    # scikit-image's corner_* pad with zeros, which makes the image border a corner; compare
    # with its structure tensor under edge replication, as ours (its Sobel is 8x ours: the
    # responses differ by a constant factor, the peaks do not)
    a, b, c = skf.structure_tensor(im, sigma=1, mode="nearest", order="rc")
    ref_resp = a * c - b * b - 0.05 * (a + c) ** 2 if name == "harris" else \
        skf.structure_tensor_eigenvalues([a, b, c])[1]
    ref = skf.corner_peaks(ref_resp, min_distance=5, threshold_rel=0.05)
    # measured: chessboard 49 vs 49, sudoku 111 vs 111 (Harris), 403 vs 403 (Shi-Tomasi);
    # all within 2 px both ways
    assert abs(len(got) - len(ref)) <= 0.05 * len(ref) + 1
    assert _near(got, ref, 2) >= 0.95 and _near(ref, got, 2) >= 0.95
    if image == "chessboard.png":
        assert len(got) == 49          # the 7 x 7 inner corners of the 8 x 8 board


def test_harris_agrees_with_opencv_on_the_chessboard(xp, images_dir):
    cv2 = pytest.importorskip("cv2")
    im = _load(images_dir, "chessboard.png", 6)
    got = to_host(corner_peaks(corner_harris(xp.asarray(im)), min_distance=5,
                               threshold_rel=0.05))
    ref = cv2.goodFeaturesToTrack(im.astype(np.float32), maxCorners=0, qualityLevel=0.05,
                                  minDistance=5, blockSize=3, useHarrisDetector=True,
                                  k=0.05)[:, 0, ::-1]
    assert len(got) == len(ref) == 49 and _near(got, ref, 2) == 1.0


def test_corner_bad_arguments_name_them(xp):
    im = xp.zeros((9, 9))
    with pytest.raises(ValueError, match="`k` must be in"):
        corner_harris(im, k=0.3)
    with pytest.raises(ValueError, match="`sigma`"):
        corner_harris(im, sigma=0)
    with pytest.raises(ValueError, match="`image` must be 2-D"):
        corner_shi_tomasi(xp.zeros((9, 9, 2)))  # colour is (H, W, 3|4)
    with pytest.raises(ValueError, match="`min_distance`"):
        corner_peaks(im, min_distance=0)
    with pytest.raises(ValueError, match="`threshold_rel`"):
        corner_peaks(im, threshold_rel=2)
    with pytest.raises(ValueError, match="`num_peaks`"):
        corner_peaks(im, num_peaks=0)
    with pytest.raises(ValueError, match="`response` must be 2-D"):
        corner_peaks(xp.zeros(9))
