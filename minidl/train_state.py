"""The state of a training run, saved and restored: what ``fit(last_checkpoint=...)`` writes
and ``fit(resume=...)`` reads.

:class:`RunState` is what ``minidl.train.fit`` carries from epoch to epoch (history, epochs
done, patience counter, training time, best weights, a partial epoch's sums).
:func:`save_training_state` writes it together with the model, optimizer, scheduler, the train
loader's position and every rank's random generators as one checkpoint
(``minidl.serialization.save_checkpoint``: one ``.npz``, no pickle, written atomically);
:func:`load_training_state` restores all of them, on the same or another number of ranks.
The parts of the file are listed in docs/distributed.md ("Resuming").

The random streams: each rank saves its own (host Generator, NumPy's legacy global state, the
NumPy device Generator); on resume rank r takes saved rank r's, modulo the saved world size.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy

from minidl import backend as B
from minidl import distributed
from minidl.metrics import RunningMetrics
from minidl.serialization import array_to_json, json_to_array, load_checkpoint, save_checkpoint

__all__ = ["RunState", "save_training_state", "load_training_state"]


@dataclass
class RunState:
    """What fit carries from epoch to epoch, saved in ``last_checkpoint``."""

    history: object                # a minidl.train.History (fit's; filled in by a resume)
    epoch: int = 0                 # epochs completed
    stale: int = 0
    train_seconds: float = 0.0
    best_state: dict | None = None
    running: RunningMetrics | None = None   # the partial epoch's sums, when resumed mid-epoch


def _rng_state() -> dict:
    """The host Generator, NumPy's legacy global state, and the NumPy device Generator (CuPy's
    Generator exposes no state: on a GPU the dropout masks after a resume are new draws)."""
    name, keys, pos, has_gauss, cached = numpy.random.get_state()
    out = {"host": json_to_array(B.host_rng().bit_generator.state),
           "legacy_keys": keys, "legacy": json_to_array([name, int(pos), int(has_gauss),
                                                         float(cached)])}
    device = getattr(B, "_device_rngs", {}).get("numpy")  # only if it exists: making it draws
    if device is not None:
        out["device_numpy"] = json_to_array(device.bit_generator.state)
    return out


def _set_rng_state(state) -> None:
    B.host_rng().bit_generator.state = array_to_json(state["host"])
    name, pos, has_gauss, cached = array_to_json(state["legacy"])
    numpy.random.set_state((name, numpy.asarray(state["legacy_keys"], numpy.uint32), pos,
                            has_gauss, cached))
    if "device_numpy" in state:
        B.device_rng(numpy).bit_generator.state = array_to_json(state["device_numpy"])


def _gather(value) -> list:
    """``value`` of every rank, on rank 0 (None elsewhere); [value] in one process."""
    comm = distributed.mpi_comm()
    return [value] if comm is None else comm.gather(value, root=0)


def _running_state(running):
    return None if running is None else {
        "count": running.count, "loss_sum": float(running.loss_sum),
        "correct": {str(k): float(v) for k, v in running.correct.items()}}


def save_training_state(path, model, optimizer, scheduler, loader, run: RunState, epoch_done,
                        running) -> None:
    """Every rank sends its RNG states and partial-epoch sums (they differ between ranks:
    an uneven last batch draws fewer random numbers on some); rank 0 writes the whole state
    atomically (``save_checkpoint``)."""
    per_rank = _gather((_rng_state(), _running_state(running)))
    if not distributed.is_main():
        return
    h = run.history
    meta = {"epoch": run.epoch, "mid_epoch": not epoch_done, "stale": run.stale,
            "train_seconds": run.train_seconds, "world_size": len(per_rank),
            "history": {"epochs": h.epochs, "best_epoch": h.best_epoch,
                        "best_value": h.best_value, "time_to_target": h.time_to_target},
            "running": [r for _, r in per_rank]}
    parts = {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "fit": {"meta": json_to_array(meta)}}
    for r, (rng, _) in enumerate(per_rank):
        parts[f"rng{r}"] = rng
    if scheduler is not None:
        parts["scheduler"] = scheduler.state_dict()
    if hasattr(loader, "state_dict"):
        parts["loader"] = loader.state_dict()
    if run.best_state is not None:
        parts["best"] = run.best_state
    save_checkpoint(path, parts)


def load_training_state(path, model, optimizer, scheduler, loader, run: RunState,
                        progress) -> None:
    """Restore what :func:`save_training_state` wrote into ``model``, ``optimizer``,
    ``scheduler``, ``loader``, this rank's random generators, and ``run`` (a fresh
    ``RunState`` whose ``history`` is an empty ``History``: both are filled in)."""
    parts = load_checkpoint(path)
    missing = [p for p in ("model", "optimizer", "rng0", "fit") if p not in parts]
    if missing:
        raise ValueError(f"fit: resume={str(path)!r} is not a training checkpoint written by "
                         f"fit(last_checkpoint=...): it lacks {missing}")
    if ("scheduler" in parts) != (scheduler is not None):
        raise ValueError(f"fit: resume={str(path)!r} was saved "
                         f"{'with' if 'scheduler' in parts else 'without'} a scheduler, but "
                         f"this run has {'one' if scheduler is not None else 'none'}")
    model.load_state_dict(parts["model"])
    optimizer.load_state_dict(parts["optimizer"])
    if scheduler is not None:
        scheduler.load_state_dict(parts["scheduler"])
    meta = array_to_json(parts["fit"]["meta"])
    rank, saved_world = distributed.rank(), meta["world_size"]
    # the same world: each rank its own random streams; another: rank r takes saved rank r's
    # (mod the saved world size), so that the run goes on reproducibly
    _set_rng_state(parts[f"rng{rank % saved_world}"])
    if "loader" in parts and hasattr(loader, "load_state_dict"):
        loader.load_state_dict(parts["loader"])
        saved = int(parts["loader"]["world_size"])
        if saved != getattr(loader, "world_size", 1) and progress:
            print(f"resuming a run saved on {saved} process(es) on {loader.world_size}: the "
                  f"same global batches of {loader.batch_size} continue in the same order, "
                  f"each now split over {loader.world_size} process(es) "
                  f"({loader.local_batch_size} samples each)", flush=True)
    h = meta["history"]
    history = run.history
    history.epochs, history.best_epoch = h["epochs"], h["best_epoch"]
    history.best_value, history.time_to_target = h["best_value"], h["time_to_target"]
    run.epoch, run.stale = meta["epoch"], meta["stale"]
    run.train_seconds, run.best_state = meta["train_seconds"], parts.get("best")
    sums = meta["running"]
    if sums[0] is not None:
        # the partial epoch's sums: each rank its own; on another world size rank 0 takes
        # them all (the epoch's metrics are sums over ranks either way)
        mine = [sums[rank]] if saved_world == distributed.world_size() else \
            (sums if rank == 0 else [])
        r = RunningMetrics()
        r.count = sum(m["count"] for m in mine)
        r.loss_sum = sum(m["loss_sum"] for m in mine)
        r.correct = {int(k): sum(m["correct"][k] for m in mine) for k in sums[0]["correct"]}
        run.running = r
    if progress:
        where = "mid-epoch" if meta["mid_epoch"] else "after epoch"
        print(f"resuming from {str(path)!r}: {where} {meta['epoch'] + meta['mid_epoch']}, "
              f"optimizer step {optimizer.step_count}", flush=True)
