"""refine_extrema's ``max_offset``: an extremum half-way between two samples oscillates
between them and is dropped at OpenCV's 0.5; 0.6 (IPOL, scikit-image) keeps it."""
import numpy as np
import pytest

from minidl import backend as B
from minifeat import SIFT
from minifeat.extrema import refine_extrema


def _peak(xp, x0, y0=10.2, s0=1.9, gaussian=False):
    """A DoG (4, 21, 21) with its maximum at (x0, y0, s0): a quadratic, or a Gaussian of
    width 2 samples along x."""
    s, y, x = np.mgrid[0:4, 0:21, 0:21].astype(np.float64)
    along_x = 0.5 * np.exp(-(x - x0) ** 2 / 8) if gaussian else 0.5 - 0.01 * (x - x0) ** 2
    return xp.asarray(along_x - 0.01 * (2 * (y - y0) ** 2 + 3 * (s - s0) ** 2))


@pytest.mark.parametrize("gaussian", [False, True])
def test_half_way_extremum_is_dropped_at_0_5_and_kept_at_0_6(xp, gaussian):
    # the fits at samples 10 and 11 put the peak 0.5 away, in turn: OpenCV's rule moves the
    # sample back and forth until max_steps and drops it
    x0 = 10.5
    dog = _peak(xp, x0, gaussian=gaussian)
    s, r, c = (xp.asarray([v]) for v in (2, 10, 10))
    opencv = refine_extrema(dog, s, r, c, 2, 0.04, 10.0, border=2)
    assert int(opencv["s"].shape[0]) == 0  # 10 -> 11 -> 10 -> ... until max_steps
    ipol = refine_extrema(dog, s, r, c, 2, 0.04, 10.0, border=2, max_offset=0.6)
    assert int(ipol["s"].shape[0]) == 1
    x = float(B.to_host(ipol["c"] + ipol["ox"])[0])
    y = float(B.to_host(ipol["r"] + ipol["oy"])[0])
    assert abs(x - x0) < 1e-9 and abs(y - 10.2) < 1e-9


def test_an_extremum_inside_half_a_sample_is_the_same_either_way(xp):
    dog = _peak(xp, 10.3)
    s, r, c = (xp.asarray([v]) for v in (2, 10, 10))
    a = refine_extrema(dog, s, r, c, 2, 0.04, 10.0, border=2)
    b = refine_extrema(dog, s, r, c, 2, 0.04, 10.0, border=2, max_offset=0.6)
    for k in a:
        np.testing.assert_array_equal(B.to_host(a[k]), B.to_host(b[k]))


def test_max_offset_is_checked():
    with pytest.raises(ValueError, match=r"`max_offset` must be in \[0.5, 1\], got 0.4"):
        SIFT(max_offset=0.4)
