"""Where does the time go?  Wall time of every op's forward and backward, grouped by op.

    from minidl.profiler import profile

    with profile() as prof:
        for xb, yb in batches:
            loss = F.softmax_cross_entropy(model(tensor(xb)), yb)
            optimizer.zero_grad(); loss.backward(); optimizer.step()
    print(prof.table())

Each :class:`~minidl.autograd.Function` call is timed (forward when it is called, backward when
``Tensor.backward`` reaches it) and booked under its op name and the shape of its first input,
so the two convolutions of a CNN get a row each.  On a GPU the device is synchronised around
every op, so the numbers are real but the run is slower than without the profiler; on the CPU
the overhead is about a microsecond per op.  Time outside ops (the optimizer step, data loading,
Python) shows up as the difference between ``prof.wall`` and ``prof.op_total``.
"""
from __future__ import annotations

import time

from minidl import autograd
from minidl import backend as B

__all__ = ["profile", "Profile"]


class Profile:
    """Timings collected by :func:`profile`: ``rows`` maps (phase, op, input shape) to
    [calls, seconds]; ``wall`` is the seconds spent inside the ``with`` block."""

    def __init__(self, sync: bool = True):
        self.sync = sync
        self.rows: dict[tuple[str, str, tuple], list] = {}
        self.wall = 0.0
        self._start = None

    # called around every forward (minidl.autograd) and every backward (minidl.backward,
    # handed autograd._profiler by Tensor.backward) while profiling
    def start_op(self):
        if self.sync:
            B.synchronize()
        return time.perf_counter()

    def end_op(self, phase: str, func, shape, t0: float) -> None:
        if self.sync:
            B.synchronize()
        key = (phase, type(func).__name__, tuple(shape))
        row = self.rows.setdefault(key, [0, 0.0])
        row[0] += 1
        row[1] += time.perf_counter() - t0

    @property
    def op_total(self) -> float:
        """Seconds spent inside op forwards and backwards."""
        return sum(s for _, s in self.rows.values())

    def table(self, top: int | None = None, per: int = 1) -> str:
        """The rows, slowest first, as a text table: milliseconds per ``per`` calls of the
        whole block (e.g. ``per=steps`` gives milliseconds per training step) and share of
        the wall time."""
        rows = sorted(self.rows.items(), key=lambda kv: -kv[1][1])[:top]
        wall = self.wall or self.op_total or 1.0
        lines = [f"{'phase':<8} {'op':<22} {'input shape':<20} {'calls':>6} {'ms':>9} "
                 f"{'share':>6}"]
        for (phase, name, shape), (calls, seconds) in rows:
            lines.append(f"{phase:<8} {name:<22} {str(shape):<20} {calls:>6} "
                         f"{seconds * 1e3 / per:>9.2f} {seconds / wall:>6.1%}")
        other = self.wall - self.op_total
        if self.wall:
            lines.append(f"{'':<8} {'(outside ops)':<22} {'':<20} {'':>6} "
                         f"{other * 1e3 / per:>9.2f} {other / wall:>6.1%}")
            lines.append(f"{'':<8} {'total':<22} {'':<20} {'':>6} "
                         f"{self.wall * 1e3 / per:>9.2f} {1:>6.1%}")
        return "\n".join(lines)

    def as_dict(self, per: int = 1) -> list[dict]:
        """The rows as JSON-friendly dicts (milliseconds per ``per`` calls)."""
        return [{"phase": p, "op": n, "input_shape": list(s), "calls": c,
                 "ms": sec * 1e3 / per}
                for (p, n, s), (c, sec) in sorted(self.rows.items(), key=lambda kv: -kv[1][1])]


class profile:
    """Context manager that times every op inside it; yields a :class:`Profile`.

    ``sync`` (default True) synchronises the device around each op (a no-op on the CPU), so
    that GPU time is booked to the op that spent it.  Profiles do not nest.
    """

    def __init__(self, sync: bool = True):
        self.prof = Profile(sync)

    def __enter__(self) -> Profile:
        if autograd._profiler is not None:
            raise RuntimeError("profile: a profile is already running; they do not nest")
        autograd._profiler = self.prof
        if self.prof.sync:
            B.synchronize()
        self.prof._start = time.perf_counter()
        return self.prof

    def __exit__(self, *exc):
        if self.prof.sync:
            B.synchronize()
        self.prof.wall += time.perf_counter() - self.prof._start
        autograd._profiler = None
        return False
