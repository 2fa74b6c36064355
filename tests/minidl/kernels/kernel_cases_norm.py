"""The reference's cases of batch_norm, for test_kernels (see kernel_cases): training (batch
statistics, the running ones updated) and evaluation (the running ones), with gamma and beta,
over (N, C), (N, C, L) and (N, C, H, W).  The running statistics are buffers, not
differentiable: the last two inputs."""
from __future__ import annotations

from minidl import functions as F
from minidl.kernels.geometry import BatchNormGeometry, UpdateGeometry

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


# -- adam: an optimizer's update, outside the autograd (OpCases.autograd False) ----------------

def _adam_inputs(p, rng, dtype):
    """The weights and three steps' gradients."""
    return [rng.standard_normal(p["shape"]).astype(dtype) for _ in range(4)]


def _adam_call(p, w, *grads):
    """Three steps of Adam (or AdamW) on a copy of w: (w, m, v) after them."""
    from minidl import optim
    from minidl.autograd import Parameter
    param = Parameter(w.copy())
    opt = getattr(optim, p["cls"])([param], lr=0.01, betas=(0.8, 0.99), eps=1e-6,
                                   weight_decay=p["wd"])
    for g in grads:
        param.grad = g.copy()
        opt.step()
    return param.data, opt.state[0]["m"], opt.state[0]["v"]


C.add(C.OpCases(
    op="adam",
    cases={"adam-5x7": dict(cls="Adam", shape=(5, 7), wd=0.0),
           "adam-l2-300": dict(cls="Adam", shape=(300,), wd=0.01),
           "adamw-4x3x3x3": dict(cls="AdamW", shape=(4, 3, 3, 3), wd=0.01)},
    inputs=_adam_inputs,
    call=_adam_call,
    geometry=lambda p, dtype, backend: UpdateGeometry.from_shapes(p["shape"], dtype,
                                                                 backend=backend),
    gradcheck=False,
    autograd=False,
))
