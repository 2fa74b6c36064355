"""``backward(retain_graph=True)`` twice gives exactly twice one backward's gradients, for every
registered kernel of every differentiable op and for each op's reference (issue 21 item 5: the
Winograd kernels and the fused Winograd block used to free their saved buffers inside backward,
so the second call crashed).  Parametrised over the registry and the op cases of
kernel_cases*.py, so a new kernel is covered by registering it."""
from __future__ import annotations

import numpy as np
import pytest

import minidl
from minidl import backend as B
from minidl import functions as F
from minidl import kernels

import kernel_cases as C
import kernel_cases_conv  # noqa: F401 (each module adds its op's cases)
import kernel_cases_norm  # noqa: F401
import kernel_cases_pool  # noqa: F401


def _choices():
    """(op, kernel name or REFERENCE, backend, case id) for every differentiable op's kernels
    and reference, on the host backends (real CuPy's kernels are the generic ones)."""
    out = []
    for op, spec in C.CASES.items():
        if not spec.autograd:
            continue
        for kernel in kernels.kernels(op):
            for backend in kernel.backends:
                if backend == "cupy":
                    continue
                for cid, params in spec.cases.items():
                    geometry = spec.geometry(params, np.dtype("float64"), backend)
                    if kernel.verdict(geometry)[0]:
                        out.append(pytest.param(op, kernel.name, backend, cid,
                                                id=f"{op}:{kernel.name}-{backend}-{cid}"))
        for cid in spec.cases:
            out.append(pytest.param(op, kernels.REFERENCE, "numpy", cid,
                                    id=f"{op}:reference-numpy-{cid}"))
    return out


def _grads_after(n_backward, make_output, tensors, gy):
    for t in tensors:
        t.grad = None
    y = make_output()
    for i in range(n_backward):
        y.backward(gy, retain_graph=i < n_backward - 1 or n_backward == 1)
    return [t.grad.copy() for t in tensors]


def _assert_twice(make_output, tensors):
    y = make_output()
    gy = np.random.default_rng(7).standard_normal(y.shape)
    gy = B.get_xp().asarray(gy.astype(y.dtype))
    once = _grads_after(1, make_output, tensors, gy)
    twice = _grads_after(2, make_output, tensors, gy)
    for i, (g1, g2) in enumerate(zip(once, twice)):
        np.testing.assert_array_equal(B.to_host(g2), 2 * B.to_host(g1),
                                      err_msg=f"gradient of input {i}")


@pytest.mark.parametrize("op, name, backend, cid", _choices())
def test_retain_graph_twice_gives_twice_the_gradient(op, name, backend, cid):
    spec = C.CASES[op]
    params = spec.cases[cid]
    with B.use_backend(backend):
        arrays = [B.get_xp().asarray(a) for a in
                  spec.inputs(params, np.random.default_rng(0), np.dtype("float64"))]
        n_grad = len(arrays) if spec.n_grad is None else spec.n_grad
        tensors = [minidl.tensor(a, dtype=a.dtype, requires_grad=i < n_grad)
                   for i, a in enumerate(arrays)]
        with kernels.force(op, name):
            # fresh copies of the running statistics each call: training updates them
            _assert_twice(lambda: spec.call(params, *tensors[:n_grad],
                                            *[a.copy() for a in arrays[n_grad:]]),
                          tensors[:n_grad])


@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("pool_kernel", [None, "halving", "tiled", kernels.REFERENCE])
def test_batch_norm_max_pool_retain_graph_twice(relu, training, pool_kernel):
    """The fused batch norm -> (ReLU) -> max pool op, under each pooling choice."""
    rng = np.random.default_rng(3)
    x = minidl.tensor(rng.standard_normal((3, 4, 6, 16)), dtype="float64", requires_grad=True)
    gamma = minidl.tensor(rng.uniform(0.5, 2, 4), dtype="float64", requires_grad=True)
    beta = minidl.tensor(rng.standard_normal(4), dtype="float64", requires_grad=True)

    def make():
        rm, rv = np.zeros(4), np.ones(4)
        return F.batch_norm_max_pool2d(x, rm, rv, gamma, beta, training=training, relu=relu)

    if pool_kernel is None:
        _assert_twice(make, [x, gamma, beta])
    else:
        with kernels.force("max_pool2d", pool_kernel):
            _assert_twice(make, [x, gamma, beta])
