"""The reference's cases of batch_norm, for test_kernels (see kernel_cases): training (batch
statistics, the running ones updated) and evaluation (the running ones), with gamma and beta,
over (N, C), (N, C, L) and (N, C, H, W).  The running statistics are buffers, not
differentiable: the last two inputs."""
from __future__ import annotations

from minidl import functions as F
from minidl.kernels.geometry import BatchNormGeometry

import kernel_cases as C

SHAPES = {"NC": (8, 3), "NCL": (4, 3, 5), "NCHW": (4, 3, 3, 2), "NCHW-large": (6, 4, 8, 8)}


def _inputs(p, rng, dtype):
    shape = p["shape"]
    c = shape[1]
    return [(rng.standard_normal(shape) * 2 + 1).astype(dtype),
            rng.uniform(0.5, 2, c).astype(dtype), rng.standard_normal(c).astype(dtype),
            rng.standard_normal(c).astype(dtype), rng.uniform(0.5, 2, c).astype(dtype)]


C.add(C.OpCases(
    op="batch_norm",
    cases={f"{name}-{'train' if training else 'eval'}": dict(shape=shape, training=training)
           for name, shape in SHAPES.items() for training in (True, False)},
    inputs=_inputs,
    call=lambda p, x, gamma, beta, rm, rv: F.batch_norm(x, rm, rv, gamma, beta,
                                                         training=p["training"]),
    geometry=lambda p, dtype, backend: BatchNormGeometry.from_shapes(
        p["shape"], p["training"], dtype, backend),
    n_grad=3,
))
