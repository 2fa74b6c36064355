"""The reference's cases of max_pool2d and avg_pool2d, for test_kernels (see kernel_cases).

Between them every pooling kernel's geometry: 2x2 stride 2 on even sizes with OW >= 8
(halving) and OW < 8 (tiled), odd sizes (the reference), overlapping windows (wide phases on
the host), windows that tile x (square, not square, one row or column per window), and average
pooling with count_include_pad off."""
from __future__ import annotations

import numpy as np

from minidl import functions as F
from minidl.kernels.geometry import PoolGeometry

import kernel_cases as C

# id: (x shape, kernel, stride, padding)
GEOMETRIES = {
    "2x2s2-OW8": ((2, 3, 4, 16), 2, 2, 0),
    "2x2s2-OW3": ((2, 3, 6, 6), 2, 2, 0),
    "2x2s2-odd": ((2, 2, 7, 7), 2, None, 0),
    "3x3s2p1": ((2, 2, 9, 8), 3, 2, 1),
    "3x3s2": ((2, 2, 9, 9), 3, 2, 0),
    "3x3s1p1": ((2, 1, 5, 5), 3, 1, 1),
    "2x2s1": ((2, 2, 5, 6), 2, 1, 0),
    "3x2s1x2p1x0": ((1, 2, 7, 8), (3, 2), (1, 2), (1, 0)),
    "3x2-tiles": ((2, 2, 6, 6), (3, 2), (3, 2), 0),
    "1x3-tiles": ((1, 2, 4, 6), (1, 3), (1, 3), 0),
    "2x1-tiles": ((2, 1, 6, 4), (2, 1), (2, 1), 0),
}


def _distinct(rng, shape, dtype):
    """Values at least 0.01 apart: no finite-difference step changes a window's maximum."""
    x = rng.permutation(np.arange(np.prod(shape))).reshape(shape) * 0.01
    return (x + rng.uniform(-1e-3, 1e-3, shape)).astype(dtype)


def _geometry(mode):
    def geometry(p, dtype, backend):
        return PoolGeometry.from_shapes(p["shape"], p["k"], p["s"], p["p"], mode=mode,
                                        count_include_pad=p.get("cip", True), dtype=dtype,
                                        backend=backend)
    return geometry


C.add(C.OpCases(
    op="max_pool2d",
    cases={cid: dict(shape=g[0], k=g[1], s=g[2], p=g[3]) for cid, g in GEOMETRIES.items()},
    inputs=lambda p, rng, dtype: [_distinct(rng, p["shape"], dtype)],
    call=lambda p, x: F.max_pool2d(x, p["k"], p["s"], p["p"]),
    geometry=_geometry("max"),
))

_AVG = {cid: dict(shape=g[0], k=g[1], s=g[2], p=g[3]) for cid, g in GEOMETRIES.items()}
_AVG.update({f"{cid}-nopadcount": dict(shape=g[0], k=g[1], s=g[2], p=g[3], cip=False)
             for cid, g in GEOMETRIES.items() if g[3] != 0})

C.add(C.OpCases(
    op="avg_pool2d",
    cases=_AVG,
    inputs=lambda p, rng, dtype: [rng.standard_normal(p["shape"]).astype(dtype)],
    call=lambda p, x: F.avg_pool2d(x, p["k"], p["s"], p["p"],
                                   count_include_pad=p.get("cip", True)),
    geometry=_geometry("avg"),
))
