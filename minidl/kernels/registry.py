"""The kernel registry: which fast path runs an op, chosen in one place.

Every op in :mod:`minidl.functions` has a reference implementation, written to be read and
correct on every backend.  A *kernel* is an optimised implementation of the same op, in its own
module under :mod:`minidl.kernels`: array code only (no autograd), the backends it serves, a
predicate ``applies(geometry) -> (bool, reason)`` and a priority.  The op's Function asks
:func:`select` once per call; the highest-priority kernel that serves the geometry's backend and
applies wins, and when none does the reference runs.

Users, tests and benchmarks steer the choice with context managers:

    with kernels.force("conv2d", "winograd"):     # this kernel, or an error saying why not
        y = minidl.functions.conv2d(x, W, padding=1)
    with kernels.force("*", "reference"):          # every op through its reference
        ...
    with kernels.disable("max_pool2d", "wide_phases"):
        ...
    print(kernels.explain("conv2d", (128, 32, 14, 14), (64, 32, 3, 3), padding=1))
"""
from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from minidl.kernels import tuning

__all__ = ["Kernel", "KernelNotApplicable", "Choice", "REFERENCE", "define_op", "register",
           "select", "force", "disable", "explain", "kernels", "ops"]

REFERENCE = "reference"

Verdict = tuple[bool, str]


class KernelNotApplicable(ValueError):
    """A forced kernel does not serve the backend or does not apply to the geometry."""


@dataclass(frozen=True)
class Kernel:
    """One registered fast path of ``op``.

    ``impl`` is what the op's Function calls (its protocol is the op's: see the op's module);
    ``backends`` the backend names it serves (numpy, strict, cupy); ``applies(geometry)``
    returns (True, why) when it should run for that geometry, else (False, why not);
    higher ``priority`` is tried first."""
    op: str
    name: str
    impl: Any
    backends: tuple[str, ...]
    applies: Callable[[Any], Verdict]
    priority: int
    summary: str = ""

    def verdict(self, geometry) -> Verdict:
        """(applies, reason) for ``geometry``, the backend included."""
        if geometry.backend not in self.backends:
            return False, (f"serves backends {', '.join(self.backends)}, not "
                           f"{geometry.backend!r}")
        ok, why = self.applies(geometry)
        return bool(ok), why


@dataclass
class _Op:
    name: str
    geometry: Callable[..., Any]   # builds the op's geometry from shapes, for explain()
    kernels: dict[str, Kernel] = field(default_factory=dict)


@dataclass(frozen=True)
class Choice:
    """What :func:`explain` returns: the kernel chosen (``"reference"`` when none applies),
    why, and every kernel considered with its verdict, in the order tried."""
    op: str
    kernel: str
    reason: str
    considered: tuple[tuple[str, bool, str], ...]
    geometry: Any

    def __str__(self) -> str:
        lines = [f"{self.op}: {self.kernel} ({self.reason})"]
        for name, ok, why in self.considered:
            lines.append(f"  {'+' if ok else '-'} {name}: {why}")
        return "\n".join(lines)


_OPS: dict[str, _Op] = {}
# the active overrides: op (or "*") -> forced kernel name; op -> names disabled
_FORCED: contextvars.ContextVar[dict] = contextvars.ContextVar("minidl_forced", default={})
_DISABLED: contextvars.ContextVar[dict] = contextvars.ContextVar("minidl_disabled",
                                                                  default={})


def define_op(op: str, geometry: Callable[..., Any]) -> None:
    """Declare an op that has kernels; ``geometry(*shapes, **params)`` builds its geometry
    for :func:`explain` (the geometry has a ``backend`` attribute)."""
    if op not in _OPS:
        _OPS[op] = _Op(op, geometry)


def register(op: str, name: str, *, backends, applies, priority: int, summary: str = ""):
    """Decorator registering ``impl`` as kernel ``name`` of ``op`` (see :class:`Kernel`)."""
    if op not in _OPS:
        raise KeyError(f"register: op {op!r} is not defined (define_op first); defined ops: "
                       f"{sorted(_OPS)}")
    if name == REFERENCE:
        raise ValueError(f"register: {REFERENCE!r} names the op's reference implementation")

    def add(impl):
        _CHOICES.clear()
        _OPS[op].kernels[name] = Kernel(op, name, impl, tuple(backends), applies, priority,
                                        summary or (impl.__doc__ or "").strip().split("\n")[0])
        return impl

    return add


def ops() -> list[str]:
    """The ops that have kernels."""
    return sorted(_OPS)


def kernels(op: str | None = None) -> list[Kernel]:
    """The kernels of ``op`` (all ops when None), highest priority first."""
    names = [op] if op is not None else sorted(_OPS)
    return [k for name in names
            for k in sorted(_op(name).kernels.values(), key=lambda k: -k.priority)]


def _op(op: str) -> _Op:
    if op not in _OPS:
        raise KeyError(f"op must be one of {sorted(_OPS)}, got {op!r}")
    return _OPS[op]


def _decide(op: str, geometry) -> tuple[Kernel | None, str, list[tuple[str, bool, str]]]:
    spec = _op(op)
    forced = _FORCED.get()
    name = forced.get(op, forced.get("*"))
    if name is not None:
        if name == REFERENCE:
            return None, "forced", []
        kernel = spec.kernels[name]   # force() checked the name
        ok, why = kernel.verdict(geometry)
        if not ok:
            raise KernelNotApplicable(f"{op}: kernel {name!r} is forced but does not apply "
                                      f"to {geometry}: {why}")
        return kernel, f"forced; {why}", [(name, True, why)]
    disabled = _DISABLED.get().get(op, frozenset())
    considered = []
    for kernel in kernels(op):
        if kernel.name in disabled:
            considered.append((kernel.name, False, "disabled"))
            continue
        ok, why = kernel.verdict(geometry)
        considered.append((kernel.name, ok, why))
        if ok:
            return kernel, why, considered
    return None, "no kernel applies", considered


# select()'s answers: an op is called with the same few geometries step after step, and the
# predicates' reasons cost more than the ops' small-batch work.  The key holds the overrides in
# force (their dicts are replaced, never changed, by force/disable) and tuning's generation.
_CHOICES: dict = {}
_CHOICES_MAX = 4096


def select(op: str, geometry) -> Kernel | None:
    """The kernel that runs ``op`` for ``geometry``, or None for the reference."""
    forced, disabled = _FORCED.get(), _DISABLED.get()
    key = (op, geometry, id(forced), id(disabled), tuning.generation())
    hit = _CHOICES.get(key)
    if hit is not None and hit[1] is forced and hit[2] is disabled:
        return hit[0]
    kernel = _decide(op, geometry)[0]
    if len(_CHOICES) >= _CHOICES_MAX:
        _CHOICES.clear()
    _CHOICES[key] = (kernel, forced, disabled)
    return kernel


def explain(op: str, *shapes, **params) -> Choice:
    """Which kernel ``op`` would run for these shapes and parameters, and why.

    ``explain("conv2d", x_shape, W_shape, stride=1, padding=0, ...)``; ``dtype`` (default
    float32) and ``backend`` (default: the active one) as keywords.  A geometry object may be
    passed instead of the shapes."""
    spec = _op(op)
    geometry = shapes[0] if len(shapes) == 1 and not params and hasattr(shapes[0], "backend") \
        else spec.geometry(*shapes, **params)
    kernel, why, considered = _decide(op, geometry)
    return Choice(op, REFERENCE if kernel is None else kernel.name, why, tuple(considered),
                  geometry)


@contextlib.contextmanager
def force(op: str, name: str) -> Iterator[None]:
    """Within the block, ``op`` runs kernel ``name`` (``"reference"``: the reference), and
    raises :class:`KernelNotApplicable` where that kernel does not apply.  ``op="*"`` with
    ``name="reference"`` forces every op's reference."""
    if op == "*":
        if name != REFERENCE:
            raise ValueError(f"force: op '*' takes only {REFERENCE!r}, got {name!r}")
    else:
        spec = _op(op)
        if name != REFERENCE and name not in spec.kernels:
            raise KeyError(f"force: {op} has no kernel {name!r}; its kernels are "
                           f"{[k.name for k in kernels(op)] + [REFERENCE]}")
    token = _FORCED.set({**_FORCED.get(), op: name})
    try:
        yield
    finally:
        _FORCED.reset(token)


@contextlib.contextmanager
def disable(op: str, *names: str) -> Iterator[None]:
    """Within the block, ``op`` does not choose the kernels ``names`` (all when none given)."""
    spec = _op(op)
    unknown = [n for n in names if n not in spec.kernels]
    if unknown:
        raise KeyError(f"disable: {op} has no kernels {unknown}; its kernels are "
                       f"{[k.name for k in kernels(op)]}")
    chosen = frozenset(names or spec.kernels)
    current = _DISABLED.get()
    token = _DISABLED.set({**current, op: current.get(op, frozenset()) | chosen})
    try:
        yield
    finally:
        _DISABLED.reset(token)
