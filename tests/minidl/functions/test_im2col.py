"""conv2d's column layouts (minidl.kernels.host.conv_layout, conv_phase_runs) and the reference's
minidl.functions.im2col: the column matrix holds, at row (c, kh, kw) and column (n, oh, ow),
the padded input under that tap; col2im is its exact adjoint (what backward needs), for wide
and exact rows, phase runs, one product per image, strides, dilations and several chunks."""
import numpy as np
import pytest

import minidl
from minidl import backend as B
from minidl import kernels
from minidl.functions.conv import conv2d
from minidl.functions.im2col import col2im, im2col
from minidl.kernels import tuning

# (x shape, W shape, stride, padding, dilation)
CASES = [((2, 3, 7, 6), (4, 3, 3, 3), 1, 1, 1),
         ((3, 2, 9, 8), (2, 2, 3, 2), 2, (1, 0), 1),
         ((2, 2, 8, 9), (3, 2, 2, 3), 1, (0, 2), (2, 1)),
         ((2, 2, 7, 9), (2, 2, 3, 3), 1, 1, (1, 2)),
         ((2, 1, 6, 6), (2, 1, 5, 5), 1, 2, 1),
         # output = input / stride: phase runs on the host (RUNS)
         ((2, 3, 6, 8), (4, 3, 3, 3), 2, 1, 1),
         ((2, 2, 8, 8), (3, 2, 7, 7), 2, 3, 1),      # shifts -2 .. 1
         ((2, 2, 8, 6), (3, 2, 3, 3), (2, 1), 1, 1),
         ((1, 2, 9, 6), (2, 2, 3, 3), 3, 1, 1),      # a phase that no tap covers
         ((2, 2, 8, 8), (3, 2, 1, 1), 2, 0, 1),      # one phase used, the others zero
         ((1, 2, 4, 4), (2, 2, 3, 3), 2, 5, 5)]      # taps only over padding
RUNS = CASES[5:]


@pytest.fixture(params=["wide", "exact", "runs", "per-image"])
def layout(request):
    """Wide rows for stride 1 (else exact), exact rows, exact rows with phase runs where they
    fit (on the host), one product per image; one image per chunk."""
    with tuning.override(CONV_WIDE_MAX_WASTE=np.inf if request.param == "wide" else -1,
                         CONV_RUNS_CHUNK_BYTES=1, CONV_CHUNK_BYTES=1,
                         CONV_PER_IMAGE_CHUNK_BYTES=1, WINOGRAD_MIN_DEPTH=np.inf,
                         CONV_PER_IMAGE_MAX_MACS=np.inf if request.param == "per-image" else 0):
        if request.param == "runs":
            yield request.param
        else:
            with kernels.disable("conv2d", "phase_runs"):
                yield request.param


def _conv(x, W, stride, padding, dilation):
    """The kernel runner of a recorded conv2d call (its plan and its layout)."""
    t = [minidl.tensor(minidl.to_device(a), requires_grad=True) for a in (x, W)]
    return conv2d(*t, stride=stride, padding=padding, dilation=dilation).creator.impl


def _columns(xp, fn, x):
    """The whole batch's column matrix as (C*KH*KW, N, OH, OW') on the host, and its chunks."""
    lay, plan, g = fn.layout, fn.plan, fn.g
    C, KH, KW, OH, OW, ow_cols = g.C, g.KH, g.KW, g.OH, g.OW, plan.ow_cols
    windows = lay.source(xp, x)[1]  # runs copy from x itself
    scratch = xp.empty(plan.images_per_chunk * plan.col_size, dtype=x.dtype)
    parts = []
    for n0, n1 in lay.chunks():
        col = np.array(B.to_host(lay.im2col(xp, windows, n0, n1, scratch)))  # scratch: reused
        if plan.per_image:
            col = col.reshape(n1 - n0, C * KH * KW, OH, OW).transpose(1, 0, 2, 3)
        parts.append(col.reshape(C * KH * KW, n1 - n0, OH, ow_cols))
    return np.concatenate(parts, axis=1)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_columns_hold_the_input_under_each_tap(xp, rng, case, layout):
    xs, ws, stride, padding, dilation = case
    x = rng.standard_normal(xs)
    fn = _conv(x, rng.standard_normal(ws), stride, padding, dilation)
    host = B.get_backend().name == "numpy"  # one product per image and chunks are host paths
    assert fn.plan.per_image == (layout == "per-image" and host)
    assert len(fn.layout.chunks()) == (xs[0] if host else 1)
    assert fn.plan.runs == (layout == "runs" and host and case in RUNS)
    g = fn.g
    C, KH, KW, OH, OW = g.C, g.KH, g.KW, g.OH, g.OW
    (sh, sw), (ph, pw), (dh, dw) = g.stride, g.padding, g.dilation
    col = _columns(xp, fn, minidl.to_device(x))
    padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    for c in range(C):
        for i in range(KH):
            for j in range(KW):
                want = padded[:, c, i * dh:i * dh + sh * (OH - 1) + 1:sh,
                              j * dw:j * dw + sw * (OW - 1) + 1:sw]
                got = col[(c * KH + i) * KW + j, :, :, :OW]
                np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_col2im_is_the_adjoint_of_im2col(xp, rng, case, layout):
    """<im2col(x), g> == <x, col2im(g)> for any column gradient g, the wide columns' too."""
    xs, ws, stride, padding, dilation = case
    x = rng.standard_normal(xs)
    fn = _conv(x, rng.standard_normal(ws), stride, padding, dilation)
    geo = fn.g
    C, KH, KW, OH, OW = geo.C, geo.KH, geo.KW, geo.OH, geo.OW
    col = _columns(xp, fn, minidl.to_device(x))
    g = rng.standard_normal(col.shape)
    gx = xp.empty(xs, dtype=xp.float64)
    nb = fn.plan.images_per_chunk
    gpad = xp.empty(nb * C * (geo.Hp * geo.Wp + (KW - 1) * geo.dilation[1]), dtype=xp.float64)
    for n0, n1 in fn.layout.chunks():
        part = g[:, n0:n1]
        if fn.plan.per_image:  # (n, C*KH*KW, OH*OW) as (C, KH, KW, n, OH, OW), as backward does
            gcol = minidl.to_device(np.ascontiguousarray(part.transpose(1, 0, 2, 3)))
            gcol = gcol.reshape(n1 - n0, C, KH, KW, OH, OW).transpose(1, 2, 3, 0, 4, 5)
        else:
            gcol = minidl.to_device(np.ascontiguousarray(part)).reshape(1, C * KH * KW, -1)
        fn.layout.col2im(xp, gcol, n1 - n0, gpad, gx[n0:n1])
    lhs = float((col * g).sum())
    rhs = float((x * B.to_host(gx)).sum())
    assert lhs == pytest.approx(rhs, rel=1e-12)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_reference_im2col_and_col2im(xp, rng, case):
    """The reference's im2col (C*KH*KW, N*OH*OW) holds the padded input under each tap, and
    its col2im is the adjoint."""
    xs, ws, stride, padding, dilation = case
    pair = lambda v: v if isinstance(v, tuple) else (v, v)  # noqa: E731
    stride, padding, dilation = pair(stride), pair(padding), pair(dilation)
    x = rng.standard_normal(xs)
    KH, KW = ws[2:]
    col = B.to_host(im2col(xp, minidl.to_device(x), (KH, KW), stride, padding, dilation))
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    OH = (xs[2] + 2 * ph - dh * (KH - 1) - 1) // sh + 1
    OW = (xs[3] + 2 * pw - dw * (KW - 1) - 1) // sw + 1
    col6 = col.reshape(xs[1], KH, KW, xs[0], OH, OW)
    padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    for i in range(KH):
        for j in range(KW):
            want = padded[:, :, i * dh:i * dh + sh * (OH - 1) + 1:sh,
                          j * dw:j * dw + sw * (OW - 1) + 1:sw].transpose(1, 0, 2, 3)
            np.testing.assert_array_equal(col6[:, i, j], want)
    g = rng.standard_normal(col.shape)
    gx = B.to_host(col2im(xp, minidl.to_device(g), xs, (KH, KW), stride, padding, dilation))
    assert float((col * g).sum()) == pytest.approx(float((x * gx).sum()), rel=1e-12)
