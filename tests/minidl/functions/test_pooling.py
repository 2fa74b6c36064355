"""minidl.functions.pooling: max/avg/global-average pooling against naive loops, float64
gradchecks (overlapping windows included), first-max tie-breaking, PyTorch parity and errors --
under every backend (the ``xp`` fixture)."""
import contextlib

import numpy as np
import pytest

import minidl
from minidl import backend as B
from minidl import functions as F
from minidl import kernels
from minidl.autograd import Tensor
from minidl.kernels import tuning
from minidl.testing import gradcheck


def dev(xp, a, dtype=np.float64):
    return xp.asarray(np.asarray(a, dtype=dtype))


def host(t):
    return minidl.to_host(t.data if isinstance(t, Tensor) else t)


def naive_pool(x, k, s, p, mode, count_include_pad=True):
    N, C, H, W = x.shape
    fill = -np.inf if mode == "max" else 0.0
    xp_ = np.pad(x, ((0, 0), (0, 0), (p[0], p[0]), (p[1], p[1])), constant_values=fill)
    ones = np.pad(np.ones((H, W)), ((p[0], p[0]), (p[1], p[1])))
    OH, OW = (H + 2 * p[0] - k[0]) // s[0] + 1, (W + 2 * p[1] - k[1]) // s[1] + 1
    y = np.zeros((N, C, OH, OW))
    for i in range(OH):
        for j in range(OW):
            win = (slice(i * s[0], i * s[0] + k[0]), slice(j * s[1], j * s[1] + k[1]))
            patch = xp_[:, :, win[0], win[1]]
            if mode == "max":
                y[:, :, i, j] = patch.max(axis=(2, 3))
            else:
                count = k[0] * k[1] if count_include_pad else ones[win].sum()
                y[:, :, i, j] = patch.sum(axis=(2, 3)) / count
    return y


def distinct(rng, shape):
    """Values at least 0.01 apart, so no finite-difference step changes which one is the max."""
    return rng.permutation(np.arange(np.prod(shape))).reshape(shape) * 0.01 \
        + rng.uniform(-1e-3, 1e-3, shape)


# (x shape, kernel, stride, padding)
POOL_CASES = [
    ((2, 3, 6, 6), 2, None, 0),          # non-overlapping
    ((2, 2, 7, 7), 2, None, 0),          # odd size: last row/column dropped (floor)
    ((2, 2, 4, 16), 2, 2, 0),            # 2x2/2, even sizes, OW >= 8: the halving fast path
    ((2, 2, 9, 8), 3, 2, 1),             # overlapping 3x3 s2, padded
    ((2, 2, 9, 9), 3, 2, 0),             # overlapping 3x3 s2
    ((1, 2, 7, 8), (3, 2), (1, 2), (1, 0)),
    ((2, 1, 5, 5), 3, 1, 1),             # heavy overlap
    ((2, 2, 6, 6), (3, 2), (3, 2), 0),   # windows that tile x, not square
    ((1, 2, 4, 6), (1, 3), (1, 3), 0),   # tiling, one row per window
    ((2, 1, 6, 4), (2, 1), (2, 1), 0),   # tiling, one column per window
]


def _pair(v):
    return v if isinstance(v, tuple) else (v, v)


@pytest.fixture(params=["wide", "taps"])
def pool_path(request):
    """Max and average pooling with overlapping windows over wide stride phases (on the host),
    or tap by tap (as on a GPU)."""
    with contextlib.ExitStack() as stack:
        if request.param == "wide":
            stack.enter_context(tuning.override(WIDE_PHASES_BLOCK_BYTES=1))  # a plane a block
        else:
            for op in ("max_pool2d", "avg_pool2d"):
                stack.enter_context(kernels.disable(op, "wide_phases"))
        yield request.param


def _path(y):
    """The kernel that ran y's pooling ("reference": none), as kernels.explain predicts it."""
    fn = y.creator
    ran = fn.kernel.name if fn.kernel is not None else kernels.REFERENCE
    g = fn.geometry
    want = kernels.explain(fn.op, (g.N, g.C, g.H, g.W), (g.KH, g.KW), g.stride, g.padding,
                           count_include_pad=g.count_include_pad, dtype=g.dtype).kernel
    assert ran == want
    return ran


def _takes_wide(y, pool_path):
    """Whether y's max pooling ran over wide phases, and whether it should have."""
    g = y.creator.geometry
    halving = _path(y) == "halving"
    wanted = (pool_path == "wide" and B.get_backend().name == "numpy"
              and not halving and g.stride != (g.KH, g.KW))
    return (_path(y) == "wide_phases") == wanted


@pytest.mark.parametrize("x_shape, k, s, p", POOL_CASES, ids=str)
def test_max_pool_forward_and_gradcheck(xp, rng, x_shape, k, s, p, pool_path):
    x = distinct(rng, x_shape)
    y = F.max_pool2d(Tensor(dev(xp, x), requires_grad=True), k, s, p)
    assert _takes_wide(y, pool_path)
    ref = naive_pool(x, _pair(k), _pair(s if s is not None else k), _pair(p), "max")
    np.testing.assert_array_equal(host(y), ref)
    gradcheck(lambda t: F.max_pool2d(t, k, s, p), [dev(xp, x)])


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("x_shape, k, s, p", POOL_CASES, ids=str)
def test_avg_pool_forward_and_gradcheck(xp, rng, x_shape, k, s, p, count_include_pad,
                                        pool_path):
    x = rng.standard_normal(x_shape)
    fn = lambda t: F.avg_pool2d(t, k, s, p, count_include_pad=count_include_pad)  # noqa: E731
    y = fn(Tensor(dev(xp, x), requires_grad=True))
    wanted = (pool_path == "wide" and B.get_backend().name == "numpy"
              and _pair(k) != _pair(s if s is not None else k))
    assert (_path(y) == "wide_phases") == wanted
    ref = naive_pool(x, _pair(k), _pair(s if s is not None else k), _pair(p), "avg",
                     count_include_pad)
    np.testing.assert_allclose(host(fn(dev(xp, x))), ref, rtol=1e-12, atol=1e-14)
    gradcheck(fn, [dev(xp, x)])


@pytest.mark.parametrize("k", [2, (3, 2), (1, 3), (2, 1)], ids=str)
def test_avg_pool_of_tiling_windows_takes_the_row_sums(xp, rng, k):
    """Windows that tile x take tiled_mean / tiled_spread, on a contiguous input and on a
    strided view: the windows' means, and gy / (KH*KW) spread over each window."""
    kh, kw = _pair(k)
    x = rng.standard_normal((3, 2, 4 * kh, 5 * kw))
    gy = rng.standard_normal((3, 2, 4, 5))
    want_gx = np.repeat(np.repeat(gy, kh, axis=2), kw, axis=3) / (kh * kw)
    strided = np.ascontiguousarray(x.transpose(0, 1, 3, 2))
    for a in (dev(xp, x), dev(xp, strided).transpose(0, 1, 3, 2)):
        t = Tensor(a, requires_grad=True)  # keeps the strided view
        y = F.avg_pool2d(t, k)
        assert _path(y) == "tiled"
        y.backward(dev(xp, gy))
        np.testing.assert_allclose(host(y), naive_pool(x, (kh, kw), (kh, kw), (0, 0), "avg"),
                                   rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(host(t.grad), want_gx, rtol=1e-15)


def test_avg_pool_windows_that_do_not_tile_take_the_taps(xp, rng):
    for shape, k, s, p in [((1, 1, 7, 7), 2, 2, 0), ((1, 1, 6, 6), 3, 2, 0),
                           ((1, 1, 6, 6), 2, 2, 1)]:
        y = F.avg_pool2d(Tensor(dev(xp, rng.standard_normal(shape)), requires_grad=True),
                         k, s, p)
        assert _path(y) != "tiled"


@pytest.mark.parametrize("keepdims", [False, True])
def test_global_avg_pool(xp, rng, keepdims):
    x = rng.standard_normal((2, 3, 4, 5))
    y = F.global_avg_pool2d(dev(xp, x), keepdims=keepdims)
    np.testing.assert_allclose(host(y), x.mean(axis=(2, 3), keepdims=keepdims), rtol=1e-12)
    gradcheck(lambda t: F.global_avg_pool2d(t, keepdims), [dev(xp, x)])


def test_max_pool_overlapping_windows_accumulate_at_a_shared_maximum(xp, pool_path):
    x = np.zeros((1, 1, 5, 5))
    x[0, 0, 2, 2] = 1.0                      # the centre lies in all four 3x3 s2 windows
    t = Tensor(dev(xp, x), requires_grad=True)
    y = F.max_pool2d(t, 3, 2)
    np.testing.assert_array_equal(host(y), np.ones((1, 1, 2, 2)))
    y.backward(dev(xp, [[[[1.0, 2.0], [3.0, 4.0]]]]))
    expected = np.zeros((5, 5))
    expected[2, 2] = 10.0
    np.testing.assert_array_equal(host(t.grad)[0, 0], expected)


def test_max_pool_ties_send_the_gradient_to_the_first_maximum_once(xp, pool_path):
    # after ReLU whole windows are 0: each window passes its gradient to its first (row-major)
    # real element, once, as PyTorch does; -inf padding never wins
    t = Tensor(dev(xp, np.zeros((1, 1, 5, 5))), requires_grad=True)
    y = F.max_pool2d(t, 3, 2, 1)             # windows cover rows/columns -1..1, 1..3, 3..5
    assert _takes_wide(y, pool_path)
    y.backward(dev(xp, np.ones((1, 1, 3, 3))))
    expected = np.zeros((5, 5))
    for r in (0, 1, 3):
        for c in (0, 1, 3):
            expected[r, c] = 1.0
    np.testing.assert_array_equal(host(t.grad)[0, 0], expected)


def _first_max_routing(x, gy):
    """Reference 2x2/2 max-pool gradient: each window's gradient to np.argmax of its 4 values
    (the first maximum in row-major order); a window holding NaN passes none."""
    N, C, H, W = x.shape
    gx = np.zeros_like(x)
    for n, c, i, j in np.ndindex(N, C, H // 2, W // 2):
        win = x[n, c, 2 * i:2 * i + 2, 2 * j:2 * j + 2].ravel()
        if not np.isnan(win).any():
            a = int(np.argmax(win))
            gx[n, c, 2 * i + a // 2, 2 * j + a % 2] = gy[n, c, i, j]
    return gx


def test_max_pool_2x2_routes_every_tie_pattern_to_the_first_maximum(xp, rng):
    # the 2x2/2 fast path (two halvings) against the reference, for all 16 patterns of ties
    # between 0 and 1 in a window, and for random windows with and without ties
    patterns = np.array([[[(m >> 3) & 1, (m >> 2) & 1], [(m >> 1) & 1, m & 1]]
                         for m in range(16)], dtype=float)        # (16, 2, 2)
    tiles = np.block([[patterns[4 * r + c] for c in range(4)] for r in range(4)])
    x = np.stack([np.hstack([tiles, -tiles]),
                  np.round(rng.standard_normal((8, 16))), rng.standard_normal((8, 16))])
    x = x.reshape(3, 1, 8, 16)
    gy = rng.uniform(1, 2, (3, 1, 4, 8))
    t = Tensor(dev(xp, x), requires_grad=True)
    y = F.max_pool2d(t, 2)
    assert _path(y) == "halving"             # the fast path is the one under test
    y.backward(dev(xp, gy))
    np.testing.assert_array_equal(host(y), naive_pool(x, (2, 2), (2, 2), (0, 0), "max"))
    np.testing.assert_array_equal(host(t.grad), _first_max_routing(x, gy))


def test_max_pool_a_nan_window_outputs_nan_and_passes_no_gradient(xp, rng, pool_path):
    for kernel, stride in [(2, 2), (3, 2)]:               # the fast path and the general one
        x = rng.standard_normal((1, 2, 6, 16))
        x[0, 1, 2, 3] = np.nan
        t = Tensor(dev(xp, x), requires_grad=True)
        y = F.max_pool2d(t, kernel, stride)
        assert (_path(y) == "halving") == (kernel == 2)
        y.backward(dev(xp, np.ones(y.shape)))
        ynan = np.isnan(host(y))
        assert ynan[0, 1].any() and not ynan[0, 0].any()
        g = host(t.grad)
        assert np.isfinite(g).all()
        assert g[0, 0].sum() == y.shape[2] * y.shape[3]    # the clean channel: all routed
        assert g[0, 1].sum() == y.shape[2] * y.shape[3] - ynan[0, 1].sum()


def test_float32_stays_float32(xp, rng):
    x = dev(xp, rng.standard_normal((2, 3, 4, 4)), np.float32)
    for fn in (lambda t: F.max_pool2d(t, 2), lambda t: F.avg_pool2d(t, 2),
               F.global_avg_pool2d):
        t = Tensor(x, requires_grad=True)
        y = fn(t)
        y.sum().backward()
        assert y.dtype == np.float32 and t.grad.dtype == np.float32


def test_bad_arguments_have_clear_messages(xp):
    x = dev(xp, np.zeros((2, 3, 6, 6)))
    with pytest.raises(ValueError, match=r"max_pool2d: x must be 4-D \(N, C, H, W\), got "
                                         r"shape \(3, 6, 6\)"):
        F.max_pool2d(dev(xp, np.zeros((3, 6, 6))), 2)
    with pytest.raises(ValueError, match=r"avg_pool2d: padding must be at most half the kernel "
                                         r"size, got padding \(2, 2\) for kernel_size \(3, 3\)"):
        F.avg_pool2d(x, 3, padding=2)
    with pytest.raises(ValueError, match=r"max_pool2d: kernel_size must be >= 1, got 0"):
        F.max_pool2d(x, 0)
    with pytest.raises(ValueError, match=r"max_pool2d: kernel 7x7 .* larger than the padded "
                                         r"input 6x6"):
        F.max_pool2d(x, 7)
    with pytest.raises(TypeError, match=r"avg_pool2d: x must be floating, got dtype int64"):
        F.avg_pool2d(dev(xp, np.zeros((1, 1, 4, 4)), np.int64), 2)
    with pytest.raises(ValueError, match=r"global_avg_pool2d: x must be 4-D"):
        F.global_avg_pool2d(dev(xp, np.zeros((2, 3))))


# --------------------------------------------------------------------------- PyTorch parity

TORCH_CASES = [("max", 2, 2, 0), ("max-even", 2, 2, 0), ("max", 3, 2, 0), ("max", 3, 2, 1),
               ("max", 3, 1, 1),
               ("avg", 2, 2, 0), ("avg", 3, 2, 1), ("avg", 3, 1, 1)]


@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("mode, k, s, p", TORCH_CASES, ids=str)
def test_matches_torch(rng, mode, k, s, p, relu):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((3, 4, 12, 16) if mode == "max-even" else (3, 4, 13, 12))
    if relu:                                 # many tied zeros, as after a ReLU
        x = np.maximum(x, 0)
    t = Tensor(x.copy(), requires_grad=True)
    fn = F.avg_pool2d if mode == "avg" else F.max_pool2d
    y = fn(t, k, s, p)
    gy = rng.standard_normal(y.shape)
    y.backward(gy)
    tx = torch.tensor(x, requires_grad=True)
    tfn = torch.nn.functional.avg_pool2d if mode == "avg" else torch.nn.functional.max_pool2d
    ty = tfn(tx, k, s, p)
    ty.backward(torch.tensor(gy))
    assert y.shape == tuple(ty.shape)
    np.testing.assert_allclose(y.data, ty.detach().numpy(), rtol=1e-6, atol=0)
    scale = np.abs(tx.grad.numpy()).max()
    assert np.abs(t.grad - tx.grad.numpy()).max() <= 1e-6 * scale
