"""The reference's cases of every op that has kernels, for :mod:`test_kernels`.

Each op registers an :class:`OpCases` here: its cases (parameters of one call), how to build a
call's inputs and run it, and its geometry (for the kernels' ``applies``).  ``test_kernels`` then
runs every registered kernel on every case it applies to, on every backend it serves, against
the op's reference (forward, backward, and a float64 gradient check).  A new kernel is tested by
registering it: a kernel that applies to none of its op's cases fails ``test_kernels``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

CASES: dict[str, "OpCases"] = {}


@dataclass
class OpCases:
    """``cases``: {case id: params}.  ``inputs(params, rng, dtype)``: the host arrays of one call
    (the first ones differentiable, see ``n_grad``).  ``call(params, *tensors)``: the op on
    minidl Tensors.  ``geometry(params, dtype, backend)``: the geometry the op builds.
    ``n_grad``: how many leading inputs get gradients (None: all).  ``rtol``/``atol``: the
    agreement asked of a kernel with the reference, by dtype name.  ``autograd`` False: an op
    outside the autograd (an optimizer's update): ``call(params, *arrays)`` takes backend
    arrays (without changing them) and returns the arrays it computed; only forward is
    compared."""
    op: str
    cases: dict[str, dict]
    inputs: Callable[[dict, np.random.Generator, Any], list]
    call: Callable[..., Any]
    geometry: Callable[[dict, Any, str], Any]
    n_grad: int | None = None
    tolerance: dict | None = None
    gradcheck: bool = True
    autograd: bool = True

    def tol(self, dtype) -> dict:
        table = {"float64": dict(rtol=1e-10, atol=1e-12), "float32": dict(rtol=1e-4, atol=1e-5)}
        table.update(self.tolerance or {})
        return table[np.dtype(dtype).name]


def add(cases: OpCases) -> OpCases:
    CASES[cases.op] = cases
    return cases
