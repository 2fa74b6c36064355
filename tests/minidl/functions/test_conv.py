"""minidl.functions.conv: conv2d against a naive loop, float64 gradchecks, PyTorch parity and
argument errors -- under every backend (the ``xp`` fixture)."""
import numpy as np
import pytest

import minidl
from minidl import functions as F
from minidl.autograd import Tensor
from minidl import kernels
from minidl.kernels import tuning
from minidl.kernels.host import winograd_stacked as stacked_module
from minidl.testing import gradcheck


def dev(xp, a, dtype=np.float64):
    return xp.asarray(np.asarray(a, dtype=dtype))


def host(t):
    return minidl.to_host(t.data if isinstance(t, Tensor) else t)


def naive_conv2d(x, W, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    """Cross-correlation by loops over output pixels (tiny sizes only)."""
    N, C, H, Wd = x.shape
    OC, Cg, KH, KW = W.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp_ = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    OH = (H + 2 * ph - dh * (KH - 1) - 1) // sh + 1
    OW = (Wd + 2 * pw - dw * (KW - 1) - 1) // sw + 1
    y = np.zeros((N, OC, OH, OW))
    per = OC // groups
    for o in range(OC):
        g = o // per
        for i in range(OH):
            for j in range(OW):
                patch = xp_[:, g * Cg:(g + 1) * Cg, i * sh:i * sh + dh * (KH - 1) + 1:dh,
                            j * sw:j * sw + dw * (KW - 1) + 1:dw]
                y[:, o, i, j] = (patch * W[o]).sum(axis=(1, 2, 3))
    if b is not None:
        y += b.reshape(1, OC, 1, 1)
    return y


# (x shape, W shape, stride, padding, dilation, groups, bias)
CASES = [
    ((2, 3, 5, 5), (4, 3, 3, 3), 1, 0, 1, 1, True),
    ((2, 3, 5, 6), (4, 3, 3, 3), 1, 1, 1, 1, True),
    ((2, 3, 7, 6), (2, 3, 3, 2), 2, 1, 1, 1, False),
    ((1, 2, 6, 7), (3, 2, 1, 1), 1, 0, 1, 1, True),
    ((2, 2, 7, 7), (3, 2, 3, 3), (2, 1), (1, 0), 1, 1, True),
    ((2, 2, 7, 8), (3, 2, 3, 3), 1, 2, 2, 1, True),          # dilation
    ((2, 2, 9, 9), (2, 2, 2, 3), 2, 1, (2, 1), 1, False),    # dilation + stride
    ((2, 4, 5, 5), (6, 2, 3, 3), 1, 1, 1, 2, True),          # groups
    ((2, 4, 6, 5), (4, 1, 3, 3), 2, 1, 1, 4, True),          # depthwise, strided
    ((1, 1, 3, 3), (1, 1, 3, 3), 1, 0, 1, 1, True),          # 1x1 output
    ((2, 3, 9, 8), (4, 3, 5, 5), 1, 2, 1, 1, True),          # 5x5: Winograd stacks pieces:
    ((2, 2, 8, 9), (3, 2, 5, 5), 1, 0, 1, 1, False),         #   shifted by 2 (stride 1)
    ((2, 3, 11, 10), (4, 3, 5, 5), 2, 2, 1, 1, True),        #   or phases (stride 2)
    ((2, 2, 9, 8), (3, 2, 5, 5), 2, 1, 1, 1, False),
    # output = input / stride: phase runs on NumPy (exact rows)
    ((2, 3, 6, 8), (4, 3, 3, 3), 2, 1, 1, 1, True),
    ((2, 4, 8, 6), (6, 2, 3, 3), 2, 1, 1, 2, True),           # groups
    ((2, 3, 8, 8), (4, 3, 5, 5), 2, 2, 1, 1, True),           # (Winograd: phases stacked)
    ((2, 2, 8, 8), (3, 2, 7, 7), 2, 3, 1, 1, False),
    ((1, 2, 9, 6), (2, 2, 3, 3), 3, 1, 1, 1, True),           # stride 3
    ((2, 2, 8, 8), (2, 2, 3, 3), 2, 2, 2, 1, True),           # dilation
    ((1, 2, 4, 4), (2, 2, 3, 3), 2, 5, 5, 1, False),          # taps only over padding
]


def _pair(v):
    return v if isinstance(v, tuple) else (v, v)


@pytest.fixture(autouse=True)
def _float64():
    minidl.set_default_dtype(np.float64)


@pytest.fixture(params=["wide", "exact", "per-image", "winograd", "reference"])
def rows(request):
    """Stride-1 convolutions with wide rows (whatever they waste) or with exact windows, every
    ungrouped convolution on NumPy with one product per image (exact windows), every ungrouped
    3x3 stride-1 and 5x5 stride-1 or 2 convolution through Winograd's F(2x2, 3x3) on NumPy
    (elsewhere exact windows: the Winograd kernels are host kernels), and the reference."""
    winograd = request.param == "winograd"
    with tuning.override(CONV_WIDE_MAX_WASTE=np.inf if request.param == "wide" else -1,
                         CONV_PER_IMAGE_MAX_MACS=np.inf if request.param == "per-image" else 0,
                         WINOGRAD_MIN_DEPTH=0 if winograd else np.inf,
                         WINOGRAD_MAX_WASTE=np.inf):
        if request.param == "reference":
            with kernels.force("conv2d", "reference"):
                yield request.param
        else:
            yield request.param


@pytest.mark.parametrize("case", CASES, ids=str)
def test_forward_matches_loops_and_gradcheck(xp, rng, case, rows):
    xs, ws, stride, padding, dilation, groups, bias = case
    x, W = rng.standard_normal(xs), rng.standard_normal(ws)
    b = rng.standard_normal(ws[0]) if bias else None
    kw = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    inputs = [dev(xp, x), dev(xp, W)] + ([dev(xp, b)] if bias else [])
    y = F.conv2d(*inputs, **kw) if bias else F.conv2d(*inputs, **kw)
    ref = naive_conv2d(x, W, b, _pair(stride), _pair(padding), _pair(dilation), groups)
    assert y.shape == ref.shape and y.dtype == np.float64
    np.testing.assert_allclose(host(y), ref, rtol=1e-12, atol=1e-12)
    gradcheck(lambda *t: F.conv2d(*t, **kw), inputs)


@pytest.mark.parametrize("stride", [1, 2])
def test_batch_chunks_give_the_same_result(xp, rng, stride, rows):
    """The host path splits the batch into cache-sized chunks; a tiny chunk size must not
    change the values or the gradients (uneven last chunk included)."""
    x, W, b = rng.standard_normal((7, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3)), \
        rng.standard_normal(4)

    def run():
        ts = [Tensor(dev(xp, a), requires_grad=True) for a in (x, W, b)]
        y = F.conv2d(*ts, stride=stride, padding=1)
        y.backward(dev(xp, np.arange(y.size).reshape(y.shape) % 5 - 2.0))
        return [host(y)] + [host(t.grad) for t in ts]

    whole = run()
    one_image = dict(CONV_CHUNK_BYTES=1, CONV_RUNS_CHUNK_BYTES=1, CONV_PER_IMAGE_CHUNK_BYTES=1,
                     WINOGRAD_CHUNK_BYTES=1, WINOGRAD_MIN_CHUNK_IMAGES=1)  # one image per chunk
    with tuning.override(**one_image):
        chunked = run()
    with tuning.override(**one_image, CONV_KEEP_COL_BYTES=0):  # backward redoes im2col
        redone = run()
    for a, c, r in zip(whole, chunked, redone):
        np.testing.assert_allclose(c, a, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(r, a, rtol=1e-12, atol=1e-12)


def test_kept_column_buffers_are_reused_only_after_release(rng):
    x = Tensor(rng.standard_normal((2, 3, 6, 6)), requires_grad=True)
    W = Tensor(rng.standard_normal((4, 3, 3, 3)), requires_grad=True)
    y1, y2 = F.conv2d(x, W, padding=1), F.conv2d(x, W, padding=1)   # two live graphs
    c1, c2 = y1.creator.impl.cols, y2.creator.impl.cols
    assert c1 is not c2
    before = host(y1)
    y1.sum().backward()                                              # releases y1's graph
    y3 = F.conv2d(x, W, padding=1)
    assert y3.creator.impl.cols is c1                                     # its buffer, reused
    np.testing.assert_array_equal(host(y3), before)
    y2.sum().backward(retain_graph=True)                             # kept for a 2nd backward
    assert F.conv2d(x, W, padding=1).creator.impl.cols is not c2
    y2.sum().backward()                 # its buffers still there: the same gradient again
    x0 = Tensor(x.data, requires_grad=True)
    F.conv2d(x0, W, padding=1).sum().backward()
    np.testing.assert_allclose(host(x.grad), 3 * host(x0.grad), rtol=1e-12)


def test_column_matrix_is_kept_only_when_W_needs_a_gradient(xp, rng):
    x = Tensor(dev(xp, rng.standard_normal((2, 3, 6, 6))), requires_grad=True)
    W = Tensor(dev(xp, rng.standard_normal((4, 3, 3, 3))), requires_grad=True)
    assert F.conv2d(x, W, padding=1).creator.impl.cols is not None
    W.requires_grad = False
    y = F.conv2d(x, W, padding=1)
    assert y.creator.impl.cols is None
    y.sum().backward()
    assert x.grad.shape == x.shape


def test_float32_stays_float32_and_only_needed_gradients(xp, rng):
    x = Tensor(dev(xp, rng.standard_normal((2, 1, 5, 5)), np.float32))
    W = Tensor(dev(xp, rng.standard_normal((3, 1, 3, 3)), np.float32), requires_grad=True)
    y = F.conv2d(x, W, padding=1)
    assert y.dtype == np.float32 and y.shape == (2, 3, 5, 5)
    y.sum().backward()
    assert x.grad is None and W.grad.dtype == np.float32 and W.grad.shape == (3, 1, 3, 3)


def test_output_size():
    assert F.conv_output_size(28, 3, 1, 1) == 28
    assert F.conv_output_size(28, 3, 2, 1) == 14
    assert F.conv_output_size(7, 3, 1, 0, dilation=2) == 3


# --------------------------------------------------------------------------- errors

def test_bad_arguments_have_clear_messages(xp):
    x = dev(xp, np.zeros((2, 3, 5, 5)))
    W = dev(xp, np.zeros((4, 3, 3, 3)))
    with pytest.raises(ValueError, match=r"conv2d: x must be 4-D \(N, C, H, W\), got shape "
                                         r"\(3, 5, 5\)"):
        F.conv2d(dev(xp, np.zeros((3, 5, 5))), W)
    with pytest.raises(ValueError, match=r"conv2d: W must be 4-D"):
        F.conv2d(x, dev(xp, np.zeros((4, 3, 3))))
    with pytest.raises(ValueError, match=r"conv2d: x has 3 channels but W of shape "
                                         r"\(4, 2, 3, 3\) with groups=1 expects 2"):
        F.conv2d(x, dev(xp, np.zeros((4, 2, 3, 3))))
    with pytest.raises(ValueError, match=r"not divisible by groups=3"):
        F.conv2d(x, dev(xp, np.zeros((4, 1, 3, 3))), groups=3)
    with pytest.raises(ValueError, match=r"conv2d: b must have shape \(4,\)"):
        F.conv2d(x, W, dev(xp, np.zeros(3)))
    with pytest.raises(ValueError, match=r"conv2d: stride must be >= 1, got 0"):
        F.conv2d(x, W, stride=0)
    with pytest.raises(ValueError, match=r"conv2d: padding must be >= 0, got -1"):
        F.conv2d(x, W, padding=-1)
    with pytest.raises(TypeError, match=r"conv2d: stride must be an int or a pair of ints, "
                                        r"got 1.5"):
        F.conv2d(x, W, stride=1.5)
    with pytest.raises(ValueError, match=r"conv2d: groups must be a positive int, got 0"):
        F.conv2d(x, W, groups=0)
    with pytest.raises(ValueError, match=r"conv2d: kernel 3x3 .* larger than the padded input "
                                         r"2x2"):
        F.conv2d(dev(xp, np.zeros((1, 3, 2, 2))), W)
    with pytest.raises(TypeError, match=r"conv2d: W has dtype float32 but x has float64"):
        F.conv2d(x, dev(xp, np.zeros((4, 3, 3, 3)), np.float32))
    with pytest.raises(TypeError, match=r"conv2d: x must be floating, got dtype int64"):
        F.conv2d(dev(xp, np.zeros((2, 3, 5, 5)), np.int64), W)
    with pytest.raises(TypeError, match=r"conv2d: x must be a Tensor or a backend array, got "
                                        r"list"):
        F.conv2d([[1.0]], W)


# --------------------------------------------------------------------------- PyTorch parity

TORCH_CASES = [(k, s, p, 1, 1) for k in (1, 3, 5) for s in (1, 2) for p in (0, 1, 2)] + [
    (3, 1, 2, 2, 1), (3, 2, 1, 2, 1), (3, 1, 1, 1, 2), (3, 2, 1, 1, 4), (5, 1, 2, 1, 2)]


def rel_err(a, b):
    return np.abs(a - b).max() / max(np.abs(b).max(), 1e-300)


@pytest.mark.parametrize("k, s, p, d, g", TORCH_CASES,
                         ids=[f"k{k}s{s}p{p}d{d}g{g}" for k, s, p, d, g in TORCH_CASES])
def test_matches_torch(rng, k, s, p, d, g, rows):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((3, 4, 11, 10))
    W = rng.standard_normal((8, 4 // g, k, k))
    b = rng.standard_normal(8)
    ts = [Tensor(a.copy(), requires_grad=True) for a in (x, W, b)]
    y = F.conv2d(*ts, stride=s, padding=p, dilation=d, groups=g)
    gy = rng.standard_normal(y.shape)
    y.backward(gy)
    tt = [torch.tensor(a, requires_grad=True) for a in (x, W, b)]
    ty = torch.nn.functional.conv2d(*tt, stride=s, padding=p, dilation=d, groups=g)
    ty.backward(torch.tensor(gy))
    assert y.shape == tuple(ty.shape)
    assert rel_err(y.data, ty.detach().numpy()) <= 1e-6
    for mine, theirs in zip(ts, tt):
        assert rel_err(mine.grad, theirs.grad.numpy()) <= 1e-6


def test_wide_rows_only_where_they_waste_little(rng):
    """Stride 1 on a 56-wide image: 2 extra columns in 56 (wide rows); on a 14-wide one with a
    5x5 kernel: 4 in 14 (exact windows); stride 2: always exact."""
    def plan(width, k, stride):
        x = Tensor(rng.standard_normal((1, 2, 8, width)), requires_grad=True)
        W = Tensor(rng.standard_normal((3, 2, k, k)), requires_grad=True)
        with kernels.force("conv2d", "columns"):
            return F.conv2d(x, W, stride=stride, padding=k // 2).creator.impl.plan
    p = plan(56, 3, 1)
    assert p.wide and p.ow_cols == 58  # wide, OW' = Wp
    p = plan(14, 5, 1)
    assert not p.wide and p.ow_cols == 14
    assert not plan(56, 3, 2).wide


def test_one_product_per_image_only_for_tiny_column_matrices_on_numpy(xp, rng):
    """The MNIST CNN's first conv (1->32 channels, 3x3 at 28x28: 226k multiply-adds per image)
    goes image by image on NumPy; its second (32->64 at 14x14: 3.6M) and every conv on other
    backends take one product."""
    def per_image(c, oc, size):
        x = Tensor(dev(xp, rng.standard_normal((2, c, size, size))), requires_grad=True)
        W = Tensor(dev(xp, rng.standard_normal((oc, c, 3, 3))), requires_grad=True)
        return F.conv2d(x, W, padding=1).creator.kernel.name == "per_image"
    assert per_image(1, 32, 28) == (minidl.get_backend().name == "numpy")
    assert not per_image(32, 64, 14)
    assert kernels.explain("conv2d", (2, 1, 28, 28), (32, 1, 3, 3), padding=1,
                           backend="numpy").kernel == "per_image"
    with kernels.disable("conv2d", "per_image"):
        assert kernels.explain("conv2d", (2, 1, 28, 28), (32, 1, 3, 3), padding=1,
                               backend="numpy").kernel == "columns"


# --------------------------------------------------------------------------- Winograd F(2x2, 3x3)

def test_winograd_only_for_wide_enough_3x3_stride_1_layers_on_numpy(xp, rng):
    """The MNIST CNN's second conv (32->64, 3x3 at 14x14: C*OC/(C+OC) = 21) goes through
    Winograd on NumPy; a 7x7 output (tiles overhang it by 31%), too few channels (32->32: 16,
    16->256: 15), stride 2, dilation, 5x5 kernels, groups and the other backends keep im2col
    (with the minimum depth of AVX2 BLAS kernels, 20)."""
    def winograd(c=32, oc=64, size=14, k=3, **kw):
        x = Tensor(dev(xp, rng.standard_normal((2, c, size, size)), np.float32))
        W = Tensor(dev(xp, rng.standard_normal((oc, c // kw.get("groups", 1), k, k)),
                       np.float32), requires_grad=True)
        with tuning.override(WINOGRAD_MIN_DEPTH=20):
            return F.conv2d(x, W, padding=k // 2, **kw).creator.kernel.name.startswith("wino")
    assert winograd() == (minidl.get_backend().name == "numpy")
    assert winograd(c=64, oc=32) == (minidl.get_backend().name == "numpy")
    assert not winograd(size=7)
    assert not winograd(c=32, oc=32)
    assert not winograd(c=16, oc=256)
    assert not winograd(stride=2)
    assert not winograd(dilation=2)
    assert not winograd(k=5)   # 5x5 stride 1 needs depth 2.5 * 20 here
    assert not winograd(groups=2)


def test_stacked_winograd_for_deep_enough_5x5_layers(xp, rng):
    """5x5 kernels go through Winograd as a stack of 3x3 pieces when deep enough: stride 2 at
    the 3x3 minimum depth, stride 1 at 2.5 times it; not rectangular kernels or strides, nor
    7x7 kernels."""
    def path(c=32, oc=64, size=14, k=(5, 5), **kw):
        x = Tensor(dev(xp, rng.standard_normal((2, c, size, size)), np.float32))
        W = Tensor(dev(xp, rng.standard_normal((oc, c, *k)), np.float32), requires_grad=True)
        with tuning.override(WINOGRAD_MIN_DEPTH=6):
            fn = F.conv2d(x, W, padding=(k[0] // 2, k[1] // 2), **kw).creator
        return {"winograd_stacked": "StackedWinograd"}.get(fn.kernel.name, "im2col")
    numpy = minidl.get_backend().name == "numpy"
    assert path() == ("StackedWinograd" if numpy else "im2col")
    assert path(stride=2, size=28) == ("StackedWinograd" if numpy else "im2col")
    assert path(c=16, oc=32, stride=2, size=28) == ("StackedWinograd" if numpy else "im2col")
    assert path(c=16, oc=32, size=28) == "im2col"          # depth 10.7 < 15
    assert path(c=8, oc=16, stride=2, size=28) == "im2col"  # depth 5.3 < 6
    assert path(stride=(2, 1), size=28) == "im2col"
    assert path(k=(5, 3)) == "im2col"
    assert path(k=(7, 7)) == "im2col"
    assert path(k=(3, 3), stride=2, size=28) == "im2col"


@pytest.mark.parametrize("size, pad", [((14, 14), 1), ((9, 12), 0), ((7, 10), 2)])
def test_winograd_float32_matches_im2col(rng, size, pad):
    """float32 through F(2x2, 3x3) (odd sizes: tiles overhanging the output) against im2col:
    the transforms' +-1 and 1/2 entries cost about 1e-6 relative; several chunks of images."""
    x = rng.standard_normal((9, 16, *size)).astype(np.float32)
    W = (rng.standard_normal((24, 16, 3, 3)) / 12).astype(np.float32)
    b = rng.standard_normal(24).astype(np.float32)
    gy = rng.uniform(0.5, 1.5, 9 * 24 * 14 * 14).astype(np.float32)

    def run(winograd):
        ts = [Tensor(a, requires_grad=True) for a in (x, W, b)]
        with tuning.override(WINOGRAD_CHUNK_BYTES=1 << 16, CONV_PER_IMAGE_MAX_MACS=0,
                             WINOGRAD_MIN_DEPTH=0,
                             WINOGRAD_MAX_WASTE=np.inf if winograd else -1):
            y = F.conv2d(*ts, padding=pad)
        assert (y.creator.kernel.name == "winograd") == winograd
        assert not winograd or len(y.creator.impl.tiles.chunks) > 1
        y.backward(gy[:y.size].reshape(y.shape))  # positive: gb's sums don't cancel
        return [host(y)] + [host(t.grad) for t in ts]

    for fast, ref in zip(run(True), run(False)):
        assert fast.dtype == np.float32
        assert rel_err(fast, ref) <= 3e-6


@pytest.mark.parametrize("size, k, stride, pad", [((14, 14), 5, 1, 2), ((11, 13), 5, 1, 1),
                                                  ((28, 28), 5, 2, 2), ((15, 12), 5, 2, 1)])
def test_stacked_winograd_float32_matches_im2col(rng, size, k, stride, pad):
    """float32 5x5 convolutions through stacked 3x3 Winograd pieces (odd sizes, padding that
    leaves the pieces partly outside x) against im2col, over several chunks of images."""
    x = rng.standard_normal((9, 8, *size)).astype(np.float32)
    W = (rng.standard_normal((12, 8, k, k)) / 20).astype(np.float32)
    b = rng.standard_normal(12).astype(np.float32)
    gy = rng.uniform(0.5, 1.5, 9 * 12 * 28 * 28).astype(np.float32)

    def run(winograd):
        ts = [Tensor(a, requires_grad=True) for a in (x, W, b)]
        with tuning.override(WINOGRAD_CHUNK_BYTES=1 << 16, WINOGRAD_MIN_CHUNK_IMAGES=1,
                             CONV_PER_IMAGE_MAX_MACS=0, WINOGRAD_MIN_DEPTH=0,
                             WINOGRAD_MAX_WASTE=np.inf if winograd else -1):
            y = F.conv2d(*ts, stride=stride, padding=pad)
        assert (y.creator.kernel.name == "winograd_stacked") == winograd
        assert not winograd or (isinstance(y.creator.impl.tiles, stacked_module.StackedWinograd)
                                and len(y.creator.impl.tiles.chunks) > 1)
        y.backward(gy[:y.size].reshape(y.shape))
        return [host(y)] + [host(t.grad) for t in ts]

    for fast, ref in zip(run(True), run(False)):
        assert fast.dtype == np.float32
        assert rel_err(fast, ref) <= 3e-6


@pytest.mark.parametrize("hw, k, stride, pad", [
    ((9, 12), 5, 2, 1), ((11, 11), 4, 2, 1), ((13, 13), 6, 2, 2), ((1, 9), 5, 2, 2),
    ((10, 7), 5, 1, 0), ((8, 9), 7, 1, 3), ((2, 7), 5, 1, 2), ((12, 12), 3, 2, 1)])
def test_stacked_winograd_splits_against_the_loops(rng, hw, k, stride, pad):
    """StackedWinograd on its own, float64, for every split it takes -- odd kernels at
    stride 1 (7x7: 3 pieces per axis), 3-6 taps at stride 2, an input of one row (an empty
    phase) -- against the loops: y, and gx, gW, gb against autograd through the loops'
    adjoint (conv2d's im2col)."""
    from minidl.workspace import Workspace
    x = rng.standard_normal((3, 2, *hw))
    W, b = rng.standard_normal((3, 2, k, k)), rng.standard_normal(3)
    ts = [Tensor(a, requires_grad=True) for a in (x, W, b)]
    y = F.conv2d(*ts, stride=stride, padding=pad)
    gy = rng.standard_normal(y.shape)
    y.backward(gy)
    wino = stacked_module.StackedWinograd(x.shape, W.shape, (stride, stride), (pad, pad),
                                           np.float64, Workspace())
    yw = wino.forward(np, x, W, b, keep_V=True, keep_U=True)
    np.testing.assert_allclose(yw, naive_conv2d(x, W, b, (stride,) * 2, (pad,) * 2),
                               rtol=1e-12, atol=1e-12)
    for got, want in zip(wino.backward(np, gy, x, True, True, True), ts):
        np.testing.assert_allclose(got, host(want.grad), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("k, stride", [(4, 1), (2, 1), (7, 2), (5, 3)])
def test_stacked_winograd_refuses_kernels_it_cannot_split(k, stride):
    """Even kernels at stride 1 (pieces 2 taps apart would not share one transform), more
    than 3 taps per phase, strides above 2: no split, and a clear error if asked."""
    from minidl.workspace import Workspace
    assert stacked_module.stacked_groups(k, stride) is None
    with pytest.raises(ValueError, match=f"a {k}x{k} kernel with stride"):
        stacked_module.StackedWinograd((2, 2, 16, 16), (3, 2, k, k), (stride, stride),
                                        (1, 1), np.float32, Workspace())
    assert [stacked_module.stacked_groups(*ks) for ks in [(5, 1), (7, 1), (5, 2), (6, 2)]] \
        == [2, 3, 2, 2]


def test_winograd_gives_its_kept_tiles_back(rng):
    x = Tensor(rng.standard_normal((4, 32, 8, 8)).astype(np.float32), requires_grad=True)
    W = Tensor(rng.standard_normal((64, 32, 3, 3)).astype(np.float32), requires_grad=True)
    with kernels.force("conv2d", "winograd"):
        y = F.conv2d(x, W, padding=1)
    wino = y.creator.impl.tiles
    assert wino.V is not None and wino.U is not None
    y.sum().backward()
    assert wino.V is None and wino.U is None
    assert x.grad.shape == x.shape and W.grad.shape == W.shape
    W.requires_grad = False  # no gW: V is not kept
    with kernels.force("conv2d", "winograd"):
        assert F.conv2d(x, W, padding=1).creator.impl.tiles.V is None


@pytest.mark.parametrize("names, depth", [(["Haswell"], 6), (["SkylakeX"], 8),
                                          (["Zen", "COOPERLAKE"], 8), ([], 6)])
def test_winograd_needs_deeper_layers_under_avx512_blas(monkeypatch, names, depth):
    """With OpenBLAS's AVX-512 kernels (GEMM 1.8x faster) im2col stays faster down to deeper
    layers, so Winograd's minimum depth C*OC/(C+OC) is 8 there, 6 otherwise."""
    monkeypatch.setattr(tuning._openblas, "kernel_names", lambda: names)
    tuning._auto_min_depth.cache_clear()
    try:
        assert tuning.winograd_min_depth() == depth
    finally:
        tuning._auto_min_depth.cache_clear()

