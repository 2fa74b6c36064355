"""The SIFT pipeline's structure: octave by octave (one octave alive at a time), the DoG never
stored whole, host threads that change no bit, and the extremum stage's device syncs."""
import gc
import weakref

import numpy as np
import pytest

from minidl import backend as B
from minidl import parallel
from minifeat import SIFT
from minifeat import sift as sift_module
from minifeat.extrema import LazyDoG, find_extrema, localize_extrema, refine_extrema
from minifeat.scale_space import build_scale_space, iter_octaves


def _blobs(rng, shape=(240, 320), n=120, noise=0.08):
    """A textured test image: Gaussian blobs of random sizes and signs on a gradient, and
    pixel noise."""
    H, W = shape
    yy, xx = np.mgrid[:H, :W].astype(np.float32)
    img = 0.3 + 0.2 * xx / W
    for _ in range(n):
        y, x = rng.uniform(0, H), rng.uniform(0, W)
        s = rng.uniform(1.5, 8)
        img += rng.choice([-0.15, 0.15]) * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * s * s))
    img += noise * rng.random(shape)
    return np.clip(img, 0, 1).astype(np.float32)


def _same(a, b):
    (ka, da), (kb, db) = a, b
    for f in ("x", "y", "sigma", "angle", "response", "octave", "layer"):
        np.testing.assert_array_equal(B.to_host(getattr(ka, f)), B.to_host(getattr(kb, f)),
                                      err_msg=f)
    np.testing.assert_array_equal(B.to_host(da), B.to_host(db))


@pytest.fixture
def threads():
    before = parallel.get_num_threads()
    yield parallel.set_num_threads
    parallel.set_num_threads(before)


def test_one_and_two_threads_give_the_same_bits(rng, threads, monkeypatch):
    img = _blobs(rng, (480, 640), 400)
    splits = []
    real = parallel.parallel_for

    def spy(n, work, *, nbytes=0, like=None):
        if parallel.get_num_threads() > 1 and n > 1 and nbytes >= parallel.MIN_BYTES:
            splits.append(getattr(work, "__qualname__", "?").split(".")[0])
        return real(n, work, nbytes=nbytes, like=like)

    monkeypatch.setattr(parallel, "parallel_for", spy)
    out = {}
    for n, nf in ((1, 0), (2, 0), (1, 300), (2, 300)):
        threads(n)
        out[n, nf] = SIFT(n_features=nf).detect_and_compute(img)
    assert len(out[1, 0][0]) > 300
    _same(out[1, 0], out[2, 0])
    _same(out[1, 300], out[2, 300])
    # the work was split: upsampling, the blur's, the extrema's and the gradient maps' strips,
    # keypoint chunks
    assert {"_upsample_axis0", "blur_gemm", "find_extrema", "gradient_polar",
            "in_keypoint_chunks"} <= set(splits), splits


def test_iter_octaves_matches_build_scale_space_and_frees_each_octave(rng):
    img = _blobs(rng, (64, 96), 30)
    ss = build_scale_space(img)
    alive = []
    for oc in iter_octaves(img):
        gc.collect()
        # the previous octave's arrays are gone once its consumer let go of them
        assert all(ref() is None for ref in alive)
        np.testing.assert_array_equal(oc.gaussians, ss.gaussians[oc.index])
        np.testing.assert_array_equal(oc.dogs, ss.dogs[oc.index])
        alive.append(weakref.ref(oc.gaussians))
        del oc
    assert len(alive) == len(ss.gaussians)
    assert all(o.dogs is None for o in iter_octaves(img, dogs=False))


def test_lazy_dog_gives_the_stored_dogs_results(xp, rng):
    img = _blobs(rng, (128, 160), 80, noise=0.5)
    ss = build_scale_space(xp.asarray(img))
    for g, dog in zip(ss.gaussians[:2], ss.dogs[:2]):
        lazy = LazyDoG(g)
        assert lazy.shape == dog.shape
        np.testing.assert_array_equal(B.to_host(lazy.rows(3, 20)), B.to_host(dog[:, 3:20]))
        found = find_extrema(dog, 0.04 / 6)
        assert int(found[0].shape[0]) > 10
        for a, b in zip(found, find_extrema(lazy, 0.04 / 6)):
            np.testing.assert_array_equal(B.to_host(a), B.to_host(b))
        want, got = refine_extrema(dog, *found, 3), refine_extrema(lazy, *found, 3)
        for k in want:
            np.testing.assert_array_equal(B.to_host(want[k]), B.to_host(got[k]), err_msg=k)


def test_device_refinement_equals_the_host_one(rng):
    """The fixed-shape refinement (CuPy, strict) gives the host path's candidates, values and
    order, on the same input."""
    st = B._get("strict")
    img = _blobs(rng, (128, 160), 80, noise=0.5)
    dog = build_scale_space(img).dogs[0]
    found = find_extrema(dog, 0.04 / 6)
    sfound = tuple(st.asarray(a) for a in found)
    for fn in (localize_extrema, refine_extrema):
        want, got = fn(dog, *found, 3), fn(st.asarray(dog), *sfound, 3)
        assert sorted(want) == sorted(got)
        for k in want:
            np.testing.assert_array_equal(want[k], B.to_host(got[k]), err_msg=k)


class _SyncCounter:
    """Counts the strict backend's operations that make CuPy wait for the device: the
    data-dependent compactions (nonzero, boolean masks, unique) and values read back."""

    FUNCS = ("nonzero", "flatnonzero", "argwhere", "unique", "asnumpy")
    METHODS = ("__bool__", "__int__", "__float__", "get", "item", "tolist", "nonzero")

    def __init__(self, monkeypatch):
        self.st = B._get("strict").xp
        self.count = 0
        for name in self.FUNCS:
            monkeypatch.setattr(self.st, name, self._wrap(getattr(self.st, name)))
        for name in self.METHODS:
            if hasattr(self.st.ndarray, name):
                monkeypatch.setattr(self.st.ndarray, name,
                                    self._wrap(getattr(self.st.ndarray, name)))
        get = self.st.ndarray.__getitem__

        def getitem(a, key):
            keys = key if isinstance(key, tuple) else (key,)
            if any(getattr(k, "dtype", None) == bool for k in keys):
                self.count += 1
            return get(a, key)

        monkeypatch.setattr(self.st.ndarray, "__getitem__", getitem)

    def _wrap(self, fn):
        def f(*args, **kwargs):
            self.count += 1
            return fn(*args, **kwargs)
        return f


def test_extremum_stage_syncs_a_fixed_number_of_times(rng, monkeypatch):
    """Detection and refinement of an octave wait for the device twice (the candidates'
    count, the survivors' count), whatever the number of candidates and refinement steps.
    The code before compacted after every step: 86 waits per octave here (4 in detection)."""
    st = B._get("strict")
    img = _blobs(rng, (128, 160), 80, noise=0.5)
    g = st.asarray(build_scale_space(img).gaussians[0])
    counter = _SyncCounter(monkeypatch)
    dog = LazyDoG(g)
    found = find_extrema(dog, 0.04 / 6)
    ref = refine_extrema(dog, *found, 3, 0.02)
    assert int(ref["s"].shape[0]) > 20
    counter.count -= 1  # the int() just above
    assert counter.count <= 2, counter.count


def test_big_images_keep_no_buffers(rng, monkeypatch):
    img = _blobs(rng, (64, 96), 30)
    sift = SIFT()
    sift.detect_and_compute(img)
    assert sift._spares  # kept: the next image of this size reuses them
    monkeypatch.setattr(sift_module, "KEEP_BUFFERS_MAX_PIXELS", 64 * 96 - 1)
    sift.detect_and_compute(img)
    assert sift._spares == []
