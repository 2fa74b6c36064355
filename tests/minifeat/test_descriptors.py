"""SIFT descriptors and orientation histograms on their own: a plain per-keypoint reference
(OpenCV's loop, in float64) for OpenCV's geometry and others, and the same bits whatever the
keypoints are described with (slices, threads, chunk sizes)."""
import math
import threading

import numpy as np
import pytest

from minidl import backend as B
from minidl import parallel
from minifeat import descriptors as D
from minifeat import orientation as O
from minifeat.filters import gaussian_blur
from minifeat.gradients import GradientSampler


def _image(rng, shape=(70, 90)):
    return np.asarray(gaussian_blur(rng.random(shape).astype(np.float32), 1.2))


def _keypoints(rng, n, shape, scale=(1.6, 3.2)):
    H, W = shape
    y = rng.uniform(-3, H + 2, n)  # some near or off the border
    x = rng.uniform(-3, W + 2, n)
    angle = rng.uniform(0, 360, n)
    angle[:min(n, 3)] = [0.0, 90.0, 359.99999][:n]
    return x, y, angle, rng.uniform(*scale, n)


def _reference(img, x, y, angle, scale, d, n_ori, hist_width):
    """OpenCV's calcSIFTDescriptor loop for one keypoint at a time, in float64."""
    H, W = img.shape
    im = img.astype(np.float64)
    out = np.zeros((len(x), d * d * n_ori))
    for k in range(len(x)):
        px, py = int(np.rint(x[k])), int(np.rint(y[k]))
        rot = 360.0 - angle[k]
        rot = 0.0 if abs(rot - 360.0) < 1e-4 else rot
        hw = hist_width * scale[k]
        radius = int(min(np.rint(hw * math.sqrt(2) * (d + 1) * 0.5), math.hypot(H, W)))
        cos_t, sin_t = math.cos(math.radians(rot)) / hw, math.sin(math.radians(rot)) / hw
        i, j = np.mgrid[-radius:radius + 1, -radius:radius + 1].reshape(2, -1)
        r_rot, c_rot = j * sin_t + i * cos_t, j * cos_t - i * sin_t
        rbin, cbin = r_rot + d / 2 - 0.5, c_rot + d / 2 - 0.5
        yy, xx = py + i, px + j
        ok = ((rbin > -1) & (rbin < d) & (cbin > -1) & (cbin < d)
              & (yy > 0) & (yy < H - 1) & (xx > 0) & (xx < W - 1))
        rbin, cbin, yy, xx, r_rot, c_rot = (a[ok] for a in (rbin, cbin, yy, xx, r_rot, c_rot))
        dx = im[yy, xx + 1] - im[yy, xx - 1]
        dy = im[yy - 1, xx] - im[yy + 1, xx]
        ori = np.degrees(np.arctan2(dy, dx)) % 360
        mag = np.hypot(dx, dy) * np.exp(-(r_rot ** 2 + c_rot ** 2) / (d * d * 0.5))
        obin = (ori - rot) * (n_ori / 360.0)
        r0, c0, o0 = np.floor(rbin), np.floor(cbin), np.floor(obin)
        fr, fc, fo = rbin - r0, cbin - c0, obin - o0
        hist = np.zeros((d + 2, d + 2, n_ori))
        for dr in (0, 1):
            for dc in (0, 1):
                for do in (0, 1):
                    w = (mag * (fr if dr else 1 - fr) * (fc if dc else 1 - fc)
                         * (fo if do else 1 - fo))
                    np.add.at(hist, ((r0 + 1 + dr).astype(int), (c0 + 1 + dc).astype(int),
                                     (o0 + do).astype(int) % n_ori), w)
        out[k] = hist[1:d + 1, 1:d + 1].reshape(-1)
    return out


@pytest.mark.parametrize("geometry", [(4, 8, 3.0), (3, 6, 2.5), (5, 12, 3.5)])
def test_descriptors_equal_opencvs_loop(xp, rng, geometry):
    d, n_ori, hist_width = geometry
    img = _image(rng)
    x, y, angle, scale = _keypoints(rng, 24, img.shape)
    g = GradientSampler(xp.asarray(img))
    got = B.to_host(D.sift_descriptors(g, *(xp.asarray(a) for a in (x, y, angle, scale)),
                                       d=d, n_ori=n_ori, hist_width=hist_width))
    want = _reference(img, x, y, angle, scale, d, n_ori, hist_width)
    assert got.shape == (24, d * d * n_ori) and got.dtype == np.float64
    # float32 samples against float64: a sample on a bin edge may fall on either side
    err = np.linalg.norm(got - want, axis=1) / np.linalg.norm(want, axis=1)
    assert np.median(err) < 1e-5 and err.max() < 1e-3, err
    assert D.descriptor_window_samples(xp.asarray(scale), d=d, hist_width=hist_width) > 0


def test_descriptor_geometry_is_checked(rng):
    img = _image(rng)
    g = GradientSampler(img)
    x, y, angle, scale = _keypoints(rng, 0, img.shape)
    assert D.sift_descriptors(g, x, y, angle, scale, d=3, n_ori=5).shape == (0, 45)
    for bad, match in ((dict(d=0), "`d` must be a positive int, got 0"),
                       (dict(n_ori=2.5), "`n_ori` must be a positive int, got 2.5"),
                       (dict(hist_width=-1.0), "`hist_width` must be positive, got -1.0")):
        with pytest.raises(ValueError, match=match):
            D.sift_descriptors(g, x, y, angle, scale, **bad)


def _split_runs(xp, img, args, fn, threads):
    """fn on all keypoints with one sampler, and on two halves with another (in two threads
    at once when ``threads``), each sampler fresh; returns both results on the host."""
    K = int(args[0].shape[0])
    whole = B.to_host(fn(GradientSampler(img), *args))
    g = GradientSampler(img)
    g.expect(10 ** 9)
    halves = [None, None]
    cut = K // 3

    def part(i, sl):
        halves[i] = B.to_host(fn(g, *(a[sl] for a in args)))

    jobs = [(0, slice(0, cut)), (1, slice(cut, K))]
    if threads:
        ts = [threading.Thread(target=part, args=job) for job in jobs]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    else:
        for job in jobs:
            part(*job)
    return whole, np.concatenate(halves)


@pytest.mark.parametrize("threads", [False, True])
def test_descriptors_of_slices_are_the_same_bits(xp, rng, threads):
    """A keypoint's descriptor does not depend on the keypoints described with it, on the
    chunks, on threads, nor on sparse reads vs dense maps: sift-pipe splits a layer's
    keypoints between threads."""
    img = xp.asarray(_image(rng, (120, 150)))
    x, y, angle, scale = (xp.asarray(a) for a in _keypoints(rng, 300, (120, 150)))
    whole, split = _split_runs(xp, img, (x, y, angle, scale), D.sift_descriptors, threads)
    np.testing.assert_array_equal(whole, split)
    for n in (1, 2):   # one keypoint per chunk, at 1 and 2 host threads
        before = parallel.get_num_threads()
        parallel.set_num_threads(n)
        try:
            one = B.to_host(D.sift_descriptors(GradientSampler(img), x, y, angle, scale,
                                               chunk_samples=1))
        finally:
            parallel.set_num_threads(before)
        np.testing.assert_array_equal(whole, one)


@pytest.mark.parametrize("threads", [False, True])
def test_orientation_histograms_of_slices_are_the_same_bits(xp, rng, threads):
    img = xp.asarray(_image(rng, (120, 150)))
    r = xp.asarray(rng.integers(-2, 122, 300))
    c = xp.asarray(rng.integers(-2, 152, 300))
    scale = xp.asarray(rng.uniform(1.6, 3.5, 300))
    whole, split = _split_runs(xp, img, (r, c, scale), O.orientation_histograms, threads)
    np.testing.assert_array_equal(whole, split)


@pytest.mark.parametrize("n_bins, sig_factor", [(O.N_BINS, O.ORI_SIG_FCTR), (24, 1.2)])
def test_orientation_histograms_equal_a_direct_sum(xp, rng, n_bins, sig_factor):
    img = _image(rng)
    H, W = img.shape
    r, c = rng.integers(0, H, 12), rng.integers(0, W, 12)
    scale = rng.uniform(1.6, 3.5, 12)
    got = B.to_host(O.orientation_histograms(GradientSampler(xp.asarray(img)), xp.asarray(r),
                                             xp.asarray(c), xp.asarray(scale), n_bins,
                                             sig_factor=sig_factor))
    assert got.shape == (12, n_bins)
    im = img.astype(np.float64)
    for k in range(12):
        R = int(np.rint(3 * sig_factor * scale[k]))
        i, j = np.mgrid[-R:R + 1, -R:R + 1].reshape(2, -1)
        yy, xx = r[k] + i, c[k] + j
        ok = (yy > 0) & (yy < H - 1) & (xx > 0) & (xx < W - 1)
        i, j, yy, xx = i[ok], j[ok], yy[ok], xx[ok]
        dx = im[yy, xx + 1] - im[yy, xx - 1]
        dy = im[yy - 1, xx] - im[yy + 1, xx]
        w = np.hypot(dx, dy) * np.exp(-(i * i + j * j) / (2 * (sig_factor * scale[k]) ** 2))
        b = np.rint(np.degrees(np.arctan2(dy, dx)) % 360 * n_bins / 360).astype(int) % n_bins
        h = np.bincount(b, w, n_bins)
        want = sum(np.roll(h, s) * f for s, f in ((-2, 1), (-1, 4), (0, 6), (1, 4), (2, 1))) / 16
        # an angle on a bin edge may round either way in float32
        assert np.abs(got[k] - want).sum() <= 1e-3 * want.sum() + 0.05 * w.max()


def test_orientation_parameters_are_checked(rng):
    g = GradientSampler(_image(rng))
    r = c = np.zeros(1, np.int64)
    with pytest.raises(ValueError, match="`n_bins` must be a positive int, got 0"):
        O.orientation_histograms(g, r, c, np.ones(1), 0)
    with pytest.raises(ValueError, match="`sig_factor` must be positive, got 0"):
        O.orientation_histograms(g, r, c, np.ones(1), sig_factor=0)


@pytest.mark.parametrize("bad", [0, -3, 1.5, True])
def test_chunk_samples_must_be_a_positive_int(bad):
    grad = GradientSampler(np.zeros((20, 20), np.float32))
    at = np.full(1, 10.0)
    with pytest.raises(ValueError, match="chunk_samples"):
        D.sift_descriptors(grad, at, at, np.zeros(1), np.full(1, 2.0), chunk_samples=bad)
