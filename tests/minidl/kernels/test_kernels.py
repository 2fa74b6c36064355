"""Every registered kernel against its op's reference, on the reference's cases (kernel_cases*.py):
forward and backward agree, and a float64 gradient check passes, on every backend the kernel
serves (real CuPy skipped without a GPU)."""
from __future__ import annotations

import numpy as np
import pytest

import minidl
from minidl import backend as B
from minidl import kernels
from minidl.testing import gradcheck

import kernel_cases as C
import kernel_cases_conv  # noqa: F401 (each module adds its op's cases)
import kernel_cases_norm  # noqa: F401
import kernel_cases_pool  # noqa: F401


def _kernel_ids():
    return [pytest.param(k, id=f"{k.op}:{k.name}") for k in kernels.kernels()]


def _applicable(kernel, backend_name, dtype="float64"):
    spec = C.CASES.get(kernel.op)
    if spec is None:
        return []
    return [cid for cid, params in spec.cases.items()
            if kernel.verdict(spec.geometry(params, np.dtype(dtype), backend_name))[0]]


def _usable(name):
    try:
        B._get(name)
        return True
    except B.BackendUnavailableError:
        return False


@pytest.mark.parametrize("kernel", _kernel_ids())
def test_every_kernel_has_cases_it_applies_to(kernel):
    assert kernel.op in C.CASES, f"{kernel.op} has kernels but no cases in tests/minidl/kernels"
    served = [b for b in kernel.backends if b != "cupy"] or ["cupy"]
    assert any(_applicable(kernel, b) for b in served), (
        f"kernel {kernel.op}:{kernel.name} applies to none of its op's cases on "
        f"{served}: add a case it takes to tests/minidl/kernels/kernel_cases_*.py")


def _run(spec, params, arrays, n_grad):
    tensors = [minidl.tensor(a, dtype=a.dtype, requires_grad=i < n_grad)
               for i, a in enumerate(arrays)]
    y = spec.call(params, *tensors)
    gy = B.get_xp().asarray(np.random.default_rng(7).standard_normal(y.shape).astype(y.dtype))
    y.backward(gy)
    return B.to_host(y.data), [B.to_host(t.grad) for t in tensors[:n_grad]]


def _kernel_cases():
    out = []
    for kernel in kernels.kernels():
        for backend in kernel.backends:
            for cid in _applicable(kernel, backend):
                out.append(pytest.param(kernel, backend, cid,
                                        id=f"{kernel.op}:{kernel.name}-{backend}-{cid}"))
    return out


@pytest.mark.parametrize("kernel, backend, cid", _kernel_cases())
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_kernel_equals_the_reference(kernel, backend, cid, dtype):
    if not _usable(backend):
        pytest.skip(f"backend {backend} not usable here")
    spec = C.CASES[kernel.op]
    params = spec.cases[cid]
    with B.use_backend(backend):
        if not kernel.verdict(spec.geometry(params, np.dtype(dtype), backend))[0]:
            pytest.skip(f"{kernel.name} does not apply to {cid} in {dtype}")
        arrays = [B.get_xp().asarray(a) for a in
                  spec.inputs(params, np.random.default_rng(0), np.dtype(dtype))]
        n_grad = len(arrays) if spec.n_grad is None else spec.n_grad
        with kernels.force(kernel.op, kernels.REFERENCE):
            y_ref, g_ref = _run(spec, params, arrays, n_grad)
        with kernels.force(kernel.op, kernel.name):
            y, g = _run(spec, params, arrays, n_grad)
    tol = spec.tol(dtype)
    np.testing.assert_allclose(y, y_ref, **tol, err_msg="forward")
    for i, (a, b) in enumerate(zip(g, g_ref)):
        np.testing.assert_allclose(a, b, **tol, err_msg=f"gradient of input {i}")


@pytest.mark.parametrize("kernel, backend, cid", _kernel_cases())
def test_kernel_passes_gradcheck(kernel, backend, cid):
    spec = C.CASES[kernel.op]
    if not spec.gradcheck:
        pytest.skip(f"{kernel.op} is not differentiable")
    if not _usable(backend):
        pytest.skip(f"backend {backend} not usable here")
    params = spec.cases[cid]
    with B.use_backend(backend):
        arrays = [B.get_xp().asarray(a) for a in
                  spec.inputs(params, np.random.default_rng(1), np.dtype("float64"))]
        n_grad = len(arrays) if spec.n_grad is None else spec.n_grad
        with kernels.force(kernel.op, kernel.name):
            gradcheck(lambda *ts: spec.call(params, *ts, *arrays[n_grad:]), arrays[:n_grad])
