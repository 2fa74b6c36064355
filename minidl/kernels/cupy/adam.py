"""Adam's update of one parameter as a single CuPy elementwise kernel ("adam": "elementwise").

    w, m, v (any shape, one float dtype T), g (cast to T):
    m = m * b1 + g * (1 - b1);  v = v * b2 + g * g * (1 - b2);
    w = w - m / (sqrt(v) / root + eps) * step

The same arithmetic, in the same order, as the reference in :mod:`minidl.optim` (the host's
thirteen in-place ufuncs through one scratch buffer).  On a GPU the MNIST models' steps are
bound by kernel launches (about ten microseconds each), not by arithmetic, and the thirteen
launches per parameter were a large part of a step (docs/design/host-runtime.md).

The "adam" kernels' protocol: ``impl(xp, w, g, m, v, b1, b2, root, eps, step)`` updates w, m
and v in place; b1, b2 are Python floats, root, eps and step scalars of w's dtype.
"""
from __future__ import annotations

from minidl.kernels.registry import register

__all__ = ["ADAM_UPDATE", "adam_update"]

# the kernel's body (C, one element; a test runs it as Python on NumPy arrays)
ADAM_UPDATE = """
m = m * b1 + g * omb1;
v = v * b2 + g * g * omb2;
w = w - m / (sqrt(v) / root + eps) * step;
"""

_COMPILED = {}   # cupy module -> its ElementwiseKernel (compiled once)


def _elementwise_kernel(cupy):
    kernel = _COMPILED.get(cupy)
    if kernel is None:
        kernel = _COMPILED[cupy] = cupy.ElementwiseKernel(
            "T g, T b1, T omb1, T b2, T omb2, T root, T eps, T step", "T w, T m, T v",
            ADAM_UPDATE, "minidl_adam_update")
    return kernel


def _applies(g):
    return True, "one elementwise kernel launch instead of thirteen"


@register("adam", "elementwise", backends=("cupy",), applies=_applies, priority=10)
def adam_update(xp, w, g, m, v, b1, b2, root, eps, step):
    """Adam's update of w, m, v in place as one CuPy elementwise kernel."""
    dt = w.dtype.type
    g = g.astype(w.dtype, copy=False)  # one type T, as the host's out= casts
    _elementwise_kernel(xp)(g, dt(b1), dt(1 - b1), dt(b2), dt(1 - b2), root, eps, step, w, m, v)
