"""minidl.functions.im2col: the column matrix holds, at row (c, kh, kw) and column (n, oh, ow),
the padded input under that tap; col2im is its exact adjoint (what backward needs), for wide
and exact rows, phase runs, one product per image, strides, dilations and several chunks."""
import numpy as np
import pytest

import minidl
from minidl import backend as B
from minidl.functions import conv as conv_module
from minidl.functions.conv import conv2d

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
def layout(request, monkeypatch):
    """Wide rows for stride 1 (else exact), exact rows, exact rows with phase runs where they
    fit (on the host), one product per image."""
    monkeypatch.setattr(conv_module, "_WIDE_MAX_WASTE", np.inf if request.param == "wide" else -1)
    monkeypatch.setattr(conv_module, "_PHASE_RUNS", request.param == "runs")
    monkeypatch.setattr(conv_module, "_RUNS_CHUNK_BYTES", 1)
    monkeypatch.setattr(conv_module, "_PER_IMAGE_MAX_MACS",
                        np.inf if request.param == "per-image" else 0)
    monkeypatch.setattr(conv_module, "_WINOGRAD_MIN_DEPTH", np.inf)
    monkeypatch.setattr(conv_module, "_CHUNK_BYTES", 1)  # one image per chunk
    monkeypatch.setattr(conv_module, "_PER_IMAGE_CHUNK_BYTES", 1)
    return request.param


def _conv(x, W, stride, padding, dilation):
    """The recorded conv2d Function of a call (its geometry and its ColumnLayout)."""
    t = [minidl.tensor(minidl.to_device(a), requires_grad=True) for a in (x, W)]
    return conv2d(*t, stride=stride, padding=padding, dilation=dilation).creator


def _columns(xp, fn, x):
    """The whole batch's column matrix as (C*KH*KW, N, OH, OW') on the host, and its chunks."""
    lay = fn.layout
    N, C, H, Wd, OC, Cg, KH, KW, OH, OW, Hp, Wp, ow_cols, wide, nb = fn.geom
    windows = x if lay.runs else lay.windows(xp, lay.padded(xp, x))  # runs copy from x
    scratch = xp.empty(nb * C * KH * KW * OH * ow_cols, dtype=x.dtype)
    parts = []
    for n0, n1 in lay.chunks():
        col = np.array(B.to_host(lay.im2col(xp, windows, n0, n1, scratch)))  # scratch: reused
        if fn.per_image:
            col = col.reshape(n1 - n0, C * KH * KW, OH, OW).transpose(1, 0, 2, 3)
        parts.append(col.reshape(C * KH * KW, n1 - n0, OH, ow_cols))
    return np.concatenate(parts, axis=1)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_columns_hold_the_input_under_each_tap(xp, rng, case, layout):
    xs, ws, stride, padding, dilation = case
    x = rng.standard_normal(xs)
    fn = _conv(x, rng.standard_normal(ws), stride, padding, dilation)
    host = B.get_backend().name == "numpy"  # one product per image and chunks are host paths
    assert fn.per_image == (layout == "per-image" and host)
    assert len(fn.layout.chunks()) == (xs[0] if host else 1)
    assert fn.layout.runs == (layout == "runs" and host and case in RUNS)
    N, C, H, Wd, OC, Cg, KH, KW, OH, OW, Hp, Wp, ow_cols, wide, nb = fn.geom
    (sh, sw), (ph, pw), (dh, dw) = fn.stride, fn.padding, fn.dilation
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
    N, C, H, Wd, OC, Cg, KH, KW, OH, OW, Hp, Wp, ow_cols, wide, nb = fn.geom
    col = _columns(xp, fn, minidl.to_device(x))
    g = rng.standard_normal(col.shape)
    gx = xp.empty(xs, dtype=xp.float64)
    gpad = xp.empty(nb * C * (Hp * Wp + (KW - 1) * fn.dilation[1]), dtype=xp.float64)
    for n0, n1 in fn.layout.chunks():
        part = g[:, n0:n1]
        if fn.per_image:  # (n, C*KH*KW, OH*OW) seen as (C, KH, KW, n, OH, OW), as backward does
            gcol = minidl.to_device(np.ascontiguousarray(part.transpose(1, 0, 2, 3)))
            gcol = gcol.reshape(n1 - n0, C, KH, KW, OH, OW).transpose(1, 2, 3, 0, 4, 5)
        else:
            gcol = minidl.to_device(np.ascontiguousarray(part)).reshape(1, C * KH * KW, -1)
        fn.layout.col2im(xp, gcol, n1 - n0, gpad, gx[n0:n1])
    lhs = float((col * g).sum())
    rhs = float((x * B.to_host(gx)).sum())
    assert lhs == pytest.approx(rhs, rel=1e-12)
