"""Fast paths of minidl's ops, beside their readable references in :mod:`minidl.functions`.

Each op (conv2d, max_pool2d, ...) has one reference implementation, written to be read and
correct on every backend.  A kernel is an optimised implementation of the same op: array code
in its own module (``host/`` for NumPy on the CPU, ``cupy/`` for CuPy, ``generic/`` for code on
``xp`` that serves every backend), registered here with the backends it serves, a predicate
saying when it applies and a priority.  The op asks the
registry once per call and runs the kernel chosen, or its reference when none applies.

    minidl.kernels.explain("conv2d", (128, 32, 14, 14), (64, 32, 3, 3), padding=1)
    with minidl.kernels.force("conv2d", "reference"): ...
    with minidl.kernels.disable("max_pool2d", "wide_phases"): ...

Thresholds live in :mod:`minidl.kernels.tuning`.  Layering: this package sits below
:mod:`minidl.functions` (it never imports it or the autograd).
"""
from minidl.kernels.registry import (  # noqa: F401
    REFERENCE, Choice, Kernel, KernelNotApplicable, define_op, disable, explain, force, kernels,
    ops, register, select,
)
from minidl.kernels import tuning  # noqa: F401
from minidl.kernels import geometry  # noqa: F401
from minidl.kernels import definitions  # noqa: F401,E402  (defines the ops)
from minidl.kernels import generic, host, cupy  # noqa: F401,E402  (registers the kernels)
