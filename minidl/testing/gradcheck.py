"""Gradient checking by central finite differences in float64, along random directions.

For a function f of tensors x_1..x_k with output y, take a random cotangent r (shape of y) and
the scalar L = sum(y * r).  Backpropagation gives dL/dx_i.  For each input i and each random
direction d (shape of x_i), the central difference

    (L(x_i + eps d) - L(x_i - eps d)) / (2 eps)

must equal <dL/dx_i, d>.  Checking one input at a time says *which* gradient is wrong; random
directions test every element at once (cf. Chainer's ``check_backward``).
"""
from __future__ import annotations

import numpy

from minidl import backend as B
from minidl.autograd import Tensor, no_grad

__all__ = ["gradcheck", "GradcheckError"]


class GradcheckError(AssertionError):
    """The analytic gradient disagrees with the finite-difference estimate."""


def _scalar(xp, y, r):
    return float((y.data * r).sum())


def gradcheck(fn, inputs, *, eps=1e-6, atol=1e-6, rtol=1e-5, n_directions=3, seed=0,
              check=None):
    """Check the gradients of ``fn(*inputs)`` against central differences.

    Parameters
    ----------
    fn : callable taking Tensors and returning a Tensor (or a tuple, whose first element is
        checked).
    inputs : sequence of float64 arrays or Tensors (on any one backend).  Non-float inputs
        (e.g. integer labels) are passed through unchecked.
    eps, atol, rtol : step and tolerances (float64).
    n_directions : random directions per input.
    check : indices of the inputs to check (default: every float input).

    Returns True; raises :class:`GradcheckError` with the numbers when a gradient is wrong.
    """
    arrays = [x.data if isinstance(x, Tensor) else x for x in inputs]
    xp = B.get_array_module(*[a for a in arrays if B.is_array(a)])
    float_idx = [i for i, a in enumerate(arrays) if B.is_array(a) and a.dtype.kind == "f"]
    for i in float_idx:
        if arrays[i].dtype != numpy.float64:
            raise TypeError(f"gradcheck: input {i} must be float64 for a meaningful check, "
                            f"got {arrays[i].dtype}")
    check = float_idx if check is None else list(check)
    host = numpy.random.default_rng(seed)

    def run(arrs, requires):
        ts = [Tensor(a, requires_grad=(i in requires)) if B.is_array(a) else a
              for i, a in enumerate(arrs)]
        y = fn(*ts)
        return ts, (y[0] if isinstance(y, tuple) else y)

    ts, y = run(arrays, set(check))
    r = B.to_device(host.standard_normal(y.shape), B.backend_of(y.data).name)
    y.backward(r)
    failures = []
    for i in check:
        g = ts[i].grad
        g = xp.zeros_like(arrays[i]) if g is None else g
        for k in range(n_directions):
            d = B.to_device(host.standard_normal(arrays[i].shape), B.backend_of(g).name)
            analytic = float((g * d).sum())
            with no_grad():
                plus = [a if j != i else a + eps * d for j, a in enumerate(arrays)]
                minus = [a if j != i else a - eps * d for j, a in enumerate(arrays)]
                lp = _scalar(xp, run(plus, set())[1], r)
                lm = _scalar(xp, run(minus, set())[1], r)
            numeric = (lp - lm) / (2 * eps)
            if not abs(analytic - numeric) <= atol + rtol * abs(numeric):
                failures.append(f"  input {i} (shape {tuple(arrays[i].shape)}), direction {k}: "
                                f"analytic {analytic:.10g} vs numeric {numeric:.10g} "
                                f"(diff {abs(analytic - numeric):.3g})")
    if failures:
        name = getattr(fn, "__name__", repr(fn))
        raise GradcheckError(f"gradcheck failed for {name}:\n" + "\n".join(failures))
    return True
