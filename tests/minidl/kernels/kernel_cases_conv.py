"""The reference's cases of conv2d, for test_kernels (see kernel_cases): the geometries of
test_conv.py's and test_im2col.py's tables (strides, padding, dilation, groups, 1x1, 5x5 and
7x7 kernels, taps only over padding, phase-run geometries), plus layers deep enough for the
Winograd kernels under the default tuning (odd sizes included), wide rows, and the same
geometries in one-image chunks (tuning overridden inside the call: several chunks, and
backward redoing im2col)."""
from __future__ import annotations

from minidl import functions as F
from minidl.kernels import tuning
from minidl.kernels.geometry import ConvGeometry

import kernel_cases as C

ONE_IMAGE_CHUNKS = dict(CONV_CHUNK_BYTES=1, CONV_RUNS_CHUNK_BYTES=1, CONV_PER_IMAGE_CHUNK_BYTES=1,
                        WINOGRAD_CHUNK_BYTES=1, WINOGRAD_MIN_CHUNK_IMAGES=1)

# id: (x shape, W shape, stride, padding, dilation, groups, bias)
_TABLE = {
    "3x3": ((2, 3, 5, 5), (4, 3, 3, 3), 1, 0, 1, 1, True),
    "3x3 pad": ((2, 3, 5, 6), (4, 3, 3, 3), 1, 1, 1, 1, True),
    "3x2 s2": ((2, 3, 7, 6), (2, 3, 3, 2), 2, 1, 1, 1, False),
    "1x1": ((1, 2, 6, 7), (3, 2, 1, 1), 1, 0, 1, 1, True),
    "s(2,1) p(1,0)": ((2, 2, 7, 7), (3, 2, 3, 3), (2, 1), (1, 0), 1, 1, True),
    "dilation": ((2, 2, 7, 8), (3, 2, 3, 3), 1, 2, 2, 1, True),
    "dilation+stride": ((2, 2, 9, 9), (2, 2, 2, 3), 2, 1, (2, 1), 1, False),
    "groups": ((2, 4, 5, 5), (6, 2, 3, 3), 1, 1, 1, 2, True),
    "depthwise s2": ((2, 4, 6, 5), (4, 1, 3, 3), 2, 1, 1, 4, True),
    "1x1 output": ((1, 1, 3, 3), (1, 1, 3, 3), 1, 0, 1, 1, True),
    "5x5 pad": ((2, 3, 9, 8), (4, 3, 5, 5), 1, 2, 1, 1, True),
    "5x5": ((2, 2, 8, 9), (3, 2, 5, 5), 1, 0, 1, 1, False),
    "5x5 s2": ((2, 3, 11, 10), (4, 3, 5, 5), 2, 2, 1, 1, True),
    "5x5 s2 p1": ((2, 2, 9, 8), (3, 2, 5, 5), 2, 1, 1, 1, False),
    "runs 3x3 s2": ((2, 3, 6, 8), (4, 3, 3, 3), 2, 1, 1, 1, True),
    "runs groups": ((2, 4, 8, 6), (6, 2, 3, 3), 2, 1, 1, 2, True),
    "runs 5x5 s2": ((2, 3, 8, 8), (4, 3, 5, 5), 2, 2, 1, 1, True),
    "runs 7x7 s2": ((2, 2, 8, 8), (3, 2, 7, 7), 2, 3, 1, 1, False),
    "runs s3": ((1, 2, 9, 6), (2, 2, 3, 3), 3, 1, 1, 1, True),
    "runs dilation": ((2, 2, 8, 8), (2, 2, 3, 3), 2, 2, 2, 1, True),
    "runs padding only": ((1, 2, 4, 4), (2, 2, 3, 3), 2, 5, 5, 1, False),
    "runs s(2,1)": ((2, 2, 8, 6), (3, 2, 3, 3), (2, 1), 1, 1, 1, True),
    "runs 1x1 s2": ((2, 2, 8, 8), (3, 2, 1, 1), 2, 0, 1, 1, True),
    "wide rows": ((2, 3, 5, 24), (4, 3, 3, 3), 1, 1, 1, 1, True),
    # deep enough for Winograd under the default tuning (depth C*OC/(C+OC) >= 8)
    "winograd": ((2, 16, 6, 7), (16, 16, 3, 3), 1, 1, 1, 1, True),
    "winograd odd": ((2, 16, 13, 14), (18, 16, 3, 3), 1, 1, 1, 1, False),
    "stacked 5x5 s2": ((2, 16, 13, 15), (16, 16, 5, 5), 2, 2, 1, 1, True),   # odd 7x8 output
    "stacked 5x5 s2 runs": ((2, 16, 8, 8), (16, 16, 5, 5), 2, 2, 1, 1, False),
    "stacked 5x5 s1": ((2, 40, 7, 6), (40, 40, 5, 5), 1, 2, 1, 1, True),
}
_CHUNKED = ["3x3 pad", "3x2 s2", "groups", "runs 3x3 s2", "runs s3", "wide rows", "winograd",
            "stacked 5x5 s2", "stacked 5x5 s1", "5x5 s2"]


def _params(row, chunked=False, redo=False):
    xs, ws, stride, padding, dilation, groups, bias = row
    if chunked:
        xs = (3,) + xs[1:]
    over = dict(ONE_IMAGE_CHUNKS) if chunked else {}
    if redo:
        over["CONV_KEEP_COL_BYTES"] = 0   # backward redoes im2col / the input transform
    return dict(x=xs, W=ws, stride=stride, padding=padding, dilation=dilation, groups=groups,
                bias=bias, tuning=over)


CASES = {cid: _params(row) for cid, row in _TABLE.items()}
CASES.update({f"{cid} chunks": _params(_TABLE[cid], chunked=True) for cid in _CHUNKED})
CASES.update({f"{cid} redo": _params(_TABLE[cid], chunked=True, redo=True)
              for cid in _CHUNKED[::2] + ["winograd", "stacked 5x5 s1"]})


def _inputs(p, rng, dtype):
    arrays = [rng.standard_normal(p["x"]), rng.standard_normal(p["W"]) / 3]
    if p["bias"]:
        arrays.append(rng.standard_normal(p["W"][0]))
    return [a.astype(dtype) for a in arrays]


def _call(p, *tensors):
    with tuning.override(**p["tuning"]):
        return F.conv2d(*tensors, stride=p["stride"], padding=p["padding"],
                        dilation=p["dilation"], groups=p["groups"])


def _geometry(p, dtype, backend):
    return ConvGeometry.from_shapes(p["x"], p["W"], p["stride"], p["padding"], p["dilation"],
                                    p["groups"], dtype=dtype, backend=backend)


C.add(C.OpCases("conv2d", CASES, _inputs, _call, _geometry,
                tolerance={"float32": dict(rtol=1e-4, atol=1e-4)}))


# -- conv2d_batch_norm_max_pool2d: the fused op against its reference, the separate ops ------
# id: (x shape, OC, padding, training, relu); deep layers take Winograd, shallow ones one
# product per image (default tuning); eval cases pass running statistics (not differentiated)
_FUSED = {
    "winograd train relu": ((2, 16, 6, 8), 16, 1, True, True),
    "winograd train": ((3, 16, 8, 6), 18, 1, True, False),
    "winograd eval relu": ((2, 16, 6, 6), 16, 1, False, True),
    "winograd pad 0": ((2, 16, 8, 10), 16, 0, True, True),
    "per image train relu": ((2, 2, 6, 8), 3, 1, True, True),
    "per image train": ((3, 1, 8, 6), 4, 1, True, False),
    "per image eval": ((2, 2, 6, 6), 3, 1, False, True),
}
FUSED_CASES = {cid: dict(x=xs, OC=oc, padding=p, training=t, relu=r)
               for cid, (xs, oc, p, t, r) in _FUSED.items()}
FUSED_CASES.update({f"{cid} chunks": dict(FUSED_CASES[cid], tuning=dict(
    FUSED_WINOGRAD_CHUNK_BYTES=1, WINOGRAD_MIN_CHUNK_IMAGES=1, FUSED_IMAGE_BLOCK_BYTES=1))
    for cid in ("winograd train", "per image train")})


def _fused_inputs(p, rng, dtype):
    C, OC = p["x"][1], p["OC"]
    gamma = rng.uniform(0.5, 2, OC)
    gamma[1] = -0.7     # a channel whose normalising map reverses the order: pools the minimum
    arrays = [rng.standard_normal(p["x"]), rng.standard_normal((OC, C, 3, 3)) * 0.3, gamma,
              rng.standard_normal(OC)]
    if not p["training"]:
        arrays += [rng.standard_normal(OC) * 0.1, rng.uniform(0.5, 2, OC)]
    return [a.astype(dtype) for a in arrays]


def _fused_call(p, x, W, gamma, beta, *stats):
    with tuning.override(**p.get("tuning", {})):
        return F.conv2d_batch_norm_max_pool2d(
            x, W, *(stats or (None, None)), gamma, beta, padding=p["padding"],
            training=p["training"], relu=p["relu"])


def _fused_geometry(p, dtype, backend):
    return ConvGeometry.from_shapes(p["x"], (p["OC"], p["x"][1], 3, 3), padding=p["padding"],
                                    dtype=dtype, backend=backend)


C.add(C.OpCases("conv2d_batch_norm_max_pool2d", FUSED_CASES, _fused_inputs, _fused_call,
                _fused_geometry, n_grad=4,
                tolerance={"float64": dict(rtol=1e-9, atol=1e-10),
                           "float32": dict(rtol=1e-3, atol=1e-4)}))
