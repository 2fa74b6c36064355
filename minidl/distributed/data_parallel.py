"""Data parallelism on top of the collectives: the same model on every rank, each rank a
shard of every batch, gradients averaged before the optimizer step.

These helpers know a model only by its duck type (``named_parameters()``, ``named_buffers()``,
``load_state_dict``), so this module sits below the layers.  ``minidl.train.fit`` calls them;
a hand-written loop can too::

    distributed.init()
    distributed.broadcast_model(model)          # rank 0's weights everywhere, shapes checked
    for x, y in loader:                         # DataLoader(..., shard=True)
        loss = loss_fn(model(x), y); optimizer.zero_grad(); loss.backward()
        distributed.average_gradients(model.parameters())
        optimizer.step()

``average_gradients`` is the simple reference: it averages after backward returned.  ``fit``
overlaps the averaging with backward instead (minidl.distributed.reducer.Reducer, started
from the autograd's "gradient ready" hooks), with the same result.
"""
from __future__ import annotations

import numpy

from minidl import backend as B
from minidl.distributed import world
from minidl.distributed.comm import BUCKET_BYTES, allreduce_mean_, allreduce_sum_, broadcast_

__all__ = ["ModelMismatchError", "check_same_model", "broadcast_model", "average_gradients",
           "allreduce_host", "all_equal"]


class ModelMismatchError(ValueError):
    """Ranks hold models with different parameter names, shapes or dtypes."""


def _signature(model) -> list[tuple[str, tuple, str]]:
    sig = [(n, tuple(p.shape), str(p.dtype)) for n, p in model.named_parameters()]
    return sig + [(n, tuple(b.shape), str(b.dtype)) for n, b in model.named_buffers()]


def check_same_model(model) -> None:
    """Raise :class:`ModelMismatchError` on every rank, naming the first differences, unless
    all ranks' models have the same parameter and buffer names, shapes and dtypes (a rank
    built with another width would otherwise hang or mix unrelated numbers in the
    allreduce)."""
    comm = world.mpi_comm()
    if comm is None:
        return
    signatures = comm.allgather(_signature(model))   # once per run: pickled lists are fine
    ref = dict((n, (s, d)) for n, s, d in signatures[0])
    problems = []
    for r, sig in enumerate(signatures[1:], 1):
        mine = dict((n, (s, d)) for n, s, d in sig)
        for name in sorted(set(ref) | set(mine)):
            if ref.get(name) != mine.get(name):
                problems.append(f"{name}: rank 0 has {_describe(ref.get(name))}, rank {r} has "
                                f"{_describe(mine.get(name))}")
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise ModelMismatchError(
            f"the {len(signatures)} ranks do not build the same model: "
            + "; ".join(problems[:5]) + more
            + ". Every rank must construct the model with the same arguments.")


def _describe(entry):
    return "nothing" if entry is None else f"shape {entry[0]} {entry[1]}"


def broadcast_model(model, root: int = 0) -> None:
    """Check that every rank has the same model (:func:`check_same_model`), then copy rank
    ``root``'s parameters and buffers (batch-norm running statistics) to all ranks."""
    if world.world_size() == 1:
        return
    check_same_model(model)
    arrays = [p.data for _, p in model.named_parameters()]
    arrays += [b for _, b in model.named_buffers()]
    broadcast_(arrays, root)   # in place, so every reference to these arrays sees them


def average_gradients(params, weight: float | None = None,
                      bucket_bytes: int = BUCKET_BYTES, comm=None) -> None:
    """Replace each parameter's ``.grad`` by the average over the ranks, in buckets.

    ``weight`` (this rank's share of the global batch, n_local / n_global) makes it a
    weighted sum instead, for a last batch that does not split evenly: sum(g_r * w_r) is
    the gradient of the mean loss over the whole global batch.  A parameter without a
    gradient on this rank contributes zeros (every rank must send the same buffers).
    ``comm``: a :class:`~minidl.distributed.comm.Communicator` instead of the default one."""
    if world.world_size() == 1 and comm is None:
        return
    params = list(params)
    for p in params:
        if p.grad is None:
            p.grad = B.get_array_module(p.data).zeros_like(p.data)
    grads = [p.grad for p in params]
    if weight is None:
        allreduce_mean_(grads, comm=comm, bucket_bytes=bucket_bytes)
    else:
        for g in grads:
            g *= g.dtype.type(weight)
        allreduce_sum_(grads, comm=comm, bucket_bytes=bucket_bytes)


def allreduce_host(values) -> numpy.ndarray:
    """The element-wise sum over ranks of a host float64 vector (metrics: loss sums, correct
    counts, confusion matrices), as a new array."""
    out = numpy.array(values, dtype=numpy.float64).reshape(-1)
    allreduce_sum_([out])
    # rank 0's sum everywhere: decisions taken from it (best epoch, early stop) must agree
    # bitwise, and MPI does not promise the same rounding on every rank
    broadcast_([out])
    return out


def all_equal(value: int) -> bool:
    """Whether every rank passed the same integer (cheap consistency checks)."""
    v = numpy.array([value, -value], dtype=numpy.float64)
    comm = world.mpi_comm()
    if comm is None:
        return True
    from mpi4py import MPI
    comm.Allreduce(MPI.IN_PLACE, v, op=MPI.MAX)
    return v[0] == value and -v[1] == value
