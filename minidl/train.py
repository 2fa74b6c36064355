"""Training and evaluation loops: ``fit`` and ``evaluate``.

``fit`` runs epochs of mini-batch gradient descent with a progress bar (loss, accuracy,
images/s), validates after every epoch, keeps the best weights (optionally as a checkpoint
file), stops early when validation stops improving, stops with a clear error on a NaN/inf
loss, and returns a :class:`History`::

    history = fit(model, train_loader, optimizer, epochs=5, val_loader=test_loader)
    history.save_plots("runs/mnist")     # loss/accuracy curves and confusion matrix, PNG

Under ``mpiexec -n R`` (``minidl.distributed``) the same call trains data-parallel: rank 0's
weights are broadcast at the start, each rank reads its shard of every batch (``DataLoader(...,
shard=True)``), gradients are averaged in buckets while backward runs (``overlap=True``;
after it with ``overlap=False``), metrics are summed over the ranks, and only rank 0 prints
and writes files.  ``last_checkpoint=`` writes the whole training state (model, optimizer,
schedule, RNGs, the loader's position, epoch and step) atomically, and ``resume=`` continues
from it, on any number of ranks (what that state holds: ``minidl.train_state``).
"""
from __future__ import annotations

import math
import pathlib
import time
from dataclasses import dataclass, field

import numpy

from minidl import backend as B
from minidl import distributed
from minidl.autograd import no_grad
from minidl.functions import softmax_cross_entropy
from minidl.metrics import RunningMetrics
from minidl.progress import ProgressBar
from minidl.serialization import remove_stale_temporaries
from minidl.train_state import RunState, load_training_state, save_training_state

__all__ = ["fit", "evaluate", "History", "TrainingDivergedError"]


class TrainingDivergedError(FloatingPointError):
    """The loss became NaN or infinite."""


@dataclass
class History:
    """Per-epoch records (dicts with epoch, train_loss, train_accuracy, val_loss,
    val_accuracy, lr, seconds, images_per_s, elapsed) plus the run's summary."""

    epochs: list = field(default_factory=list)
    best_epoch: int | None = None
    best_value: float | None = None
    stopped_early: bool = False
    time_to_target: float | None = None  # training seconds until val accuracy >= target
    confusion_matrix: object = None       # of the final validation pass (host array)

    def column(self, key):
        return [e.get(key) for e in self.epochs]

    def save_plots(self, folder, class_names=None) -> list[pathlib.Path]:
        """Write ``curves.png`` (and ``confusion_matrix.png`` when known) into ``folder``."""
        from minidl.plot import plot_confusion_matrix, plot_history
        folder = pathlib.Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = [plot_history(self, folder / "curves.png")]
        if self.confusion_matrix is not None:
            paths.append(plot_confusion_matrix(self.confusion_matrix,
                                               folder / "confusion_matrix.png", class_names))
        return paths


def _loss_sum(loss_fn, logits, y):
    return loss_fn(logits, y, reduction="sum")


def evaluate(model, loader, loss_fn=softmax_cross_entropy, num_classes=None, topk=(1,),
             progress=False) -> dict:
    """Loss and accuracy of ``model`` over ``loader`` in eval mode, without a graph.

    Returns host values: ``loss`` (mean), ``accuracy``, ``top{k}_accuracy`` for k in ``topk``,
    and ``confusion_matrix`` ((C, C) numpy array, rows true) when ``num_classes`` is given.
    """
    was_training = model.training
    model.eval()
    running = RunningMetrics(num_classes, topk)
    bar = ProgressBar(total=len(loader), desc="eval", unit="batch",
                      enabled=progress and distributed.is_main())
    try:
        with no_grad():
            for x, y in loader:
                logits = model(x)
                running.update(logits, y, _loss_sum(loss_fn, logits, y).data)
                bar.update(1)
    finally:
        bar.close()
        model.train(was_training)
    return _result(running, loader)


def _sharded(loader) -> bool:
    return getattr(loader, "shard", False) and distributed.world_size() > 1


def _result(running: RunningMetrics, loader) -> dict:
    """``running.result()``, summed over the ranks when ``loader`` is sharded (each rank saw
    a different part of the data)."""
    if not _sharded(loader):
        return running.result()
    ks = list(running.correct)
    cm = None if running.cm is None else numpy.asarray(B.to_host(running.cm), numpy.float64)
    parts = [[running.count, float(running.loss_sum)],
             [float(running.correct[k]) for k in ks], [] if cm is None else cm.ravel()]
    total = distributed.allreduce_host(numpy.concatenate([numpy.asarray(q, numpy.float64)
                                                          for q in parts]))
    out = RunningMetrics(running.num_classes, running.topk)
    out.count, out.loss_sum = int(total[0]), total[1]
    out.correct = {k: total[2 + i] for i, k in enumerate(ks)}
    if cm is not None:
        out.cm = total[2 + len(ks):].reshape(cm.shape).astype(numpy.int64)
    return out.result()


def fit(model, train_loader, optimizer, epochs: int, val_loader=None,
        loss_fn=softmax_cross_entropy, scheduler=None, scheduler_per_batch: bool = False,
        checkpoint=None, patience: int | None = None, monitor: str = "val_accuracy",
        target_accuracy: float | None = None, num_classes: int | None = None,
        log_every: int = 20, progress: bool = True, on_epoch_end=None,
        last_checkpoint=None, save_every: int | None = None, resume=None,
        overlap: bool = True) -> History:
    """Train ``model`` for ``epochs`` epochs.

    Parameters
    ----------
    train_loader, val_loader : iterables of ``(x, y)`` batches on the model's device, with
        ``len()`` (``minidl.data.DataLoader``; ``shard=True`` under MPI).
    optimizer : a ``minidl.optim`` optimizer over ``model.parameters()``.
    loss_fn : ``loss_fn(logits, y, reduction=...)``; default softmax cross-entropy.
    scheduler : a ``minidl.optim`` schedule, stepped after each epoch, or after each batch when
        ``scheduler_per_batch`` (OneCycleLR).
    checkpoint : path of a ``.npz`` file where the best model (by ``monitor``) is saved.
    patience : stop when ``monitor`` has not improved for this many epochs.
    monitor : "val_accuracy" (higher is better) or "val_loss" (lower is better); the train_
        equivalents are used when there is no ``val_loader``.
    target_accuracy : record in ``History.time_to_target`` the training time (seconds, without
        evaluation) at the end of the first epoch whose validation accuracy reaches it.
    log_every : batches between progress updates (each reads the loss: a device sync on GPU)
        and NaN/inf checks.
    on_epoch_end : optional ``callback(record: dict)``.
    last_checkpoint : path of a ``.npz`` file holding the whole training state (model,
        optimizer, scheduler, RNGs, the train loader's position, epoch, step, history),
        written atomically at the end of every epoch and every ``save_every`` batches.
    resume : path of such a file: continue the run where it stopped (the same batches, the
        same random numbers: the parameters end as those of an uninterrupted run).  Resuming
        needs a ``DataLoader`` with a seed (or minidl.seed) as ``train_loader``.

    Under MPI (``minidl.distributed``, world size > 1) the run is data-parallel; see the
    module docstring.  ``train_loader`` must then be sharded.  ``overlap``: average the
    gradients bucket by bucket while backward runs (``distributed.Reducer``), or after it
    returned (``distributed.average_gradients``, False): the same sums, bitwise on 2 ranks.
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"fit: epochs must be a positive int, got {epochs!r}")
    if monitor not in ("val_accuracy", "val_loss", "train_accuracy", "train_loss"):
        raise ValueError(f"fit: monitor must be val_accuracy, val_loss, train_accuracy or "
                         f"train_loss, got {monitor!r}")
    if save_every is not None and (not isinstance(save_every, int) or save_every < 1):
        raise ValueError(f"fit: save_every must be a positive int or None, got {save_every!r}")
    if save_every is not None and last_checkpoint is None:
        raise ValueError("fit: save_every needs last_checkpoint (the file to write)")
    if val_loader is None and monitor.startswith("val_"):
        monitor = monitor.replace("val_", "train_")
    world = distributed.world_size()
    if world > 1:
        if hasattr(train_loader, "shard") and not train_loader.shard:
            raise ValueError(f"fit: running on {world} processes but train_loader is not "
                             "sharded: every rank would train on the same batches; build it "
                             "with DataLoader(..., shard=True)")
        distributed.broadcast_model(model)
    progress = progress and distributed.is_main()
    if last_checkpoint is not None and distributed.is_main():
        remove_stale_temporaries(last_checkpoint)   # of a run killed while writing it
    run = RunState(History())
    if resume is not None:
        # said even without progress bars: a resumed run should never pass unnoticed
        load_training_state(resume, model, optimizer, scheduler, train_loader, run,
                            distributed.is_main())
    history = run.history
    higher_is_better = monitor.endswith("accuracy")
    saver = None if last_checkpoint is None else (
        lambda epoch_done, running: save_training_state(
            last_checkpoint, model, optimizer, scheduler, train_loader, run, epoch_done,
            running))
    for epoch in range(run.epoch + 1, epochs + 1):
        record, seconds = _train_one_epoch(
            model, train_loader, optimizer, loss_fn, epoch, epochs,
            scheduler if scheduler_per_batch else None, log_every, progress,
            run.running, saver, save_every, overlap)
        run.running = None
        run.train_seconds += seconds
        record.update(epoch=epoch, seconds=seconds, elapsed=run.train_seconds)
        if val_loader is not None:
            val = evaluate(model, val_loader, loss_fn, num_classes=num_classes)
            record["val_loss"], record["val_accuracy"] = val["loss"], val["accuracy"]
            history.confusion_matrix = val.get("confusion_matrix")
            if (target_accuracy is not None and history.time_to_target is None
                    and val["accuracy"] >= target_accuracy):
                history.time_to_target = run.train_seconds
        if scheduler is not None and not scheduler_per_batch:
            scheduler.step()
        history.epochs.append(record)
        if progress:
            print(_epoch_line(record), flush=True)
        if on_epoch_end is not None:
            on_epoch_end(record)
        value = record[monitor]
        improved = history.best_value is None or (
            value > history.best_value if higher_is_better else value < history.best_value)
        stop = False
        if improved:
            history.best_epoch, history.best_value, run.stale = epoch, value, 0
            if checkpoint is not None:
                if distributed.is_main():
                    model.save(checkpoint)
                distributed.barrier()   # the file is complete before any rank may read it
            else:
                run.best_state = {k: v.copy() for k, v in model.state_dict().items()}
        else:
            run.stale += 1
            stop = patience is not None and run.stale >= patience
        run.epoch = epoch
        if saver is not None:
            saver(True, None)
        if stop:
            history.stopped_early = True
            if progress:
                print(f"early stop: {monitor} has not improved for {patience} epochs "
                      f"(best {history.best_value:.4f} at epoch {history.best_epoch})")
            break
    if history.epochs:
        _restore_best(model, checkpoint, run.best_state, history)
    return history


def _restore_best(model, checkpoint, best_state, history):
    if history.best_epoch == history.epochs[-1]["epoch"]:
        return  # the model in hand is already the best one
    if checkpoint is not None:
        model.load(checkpoint)
    elif best_state is not None:
        model.load_state_dict(best_state)


def _train_one_epoch(model, loader, optimizer, loss_fn, epoch, epochs, batch_scheduler,
                     log_every, progress, running=None, saver=None, save_every=None,
                     overlap=True):
    model.train()
    running = running or RunningMetrics()
    done = getattr(loader, "resume_position", 0)
    bar = ProgressBar(total=len(loader), desc=f"epoch {epoch}/{epochs}", unit="batch",
                      enabled=progress)
    bar.update(done)
    sharded = _sharded(loader)
    # averaged whenever there are several ranks, even over a loader of the user's own that
    # minidl cannot see sharding: else the ranks' models would silently drift apart
    world = distributed.world_size()
    params = optimizer.params
    reducer = distributed.Reducer(params) if world > 1 and overlap else None
    seen = 0
    pending = 0
    start = time.perf_counter()
    try:
        for i, (x, y) in enumerate(loader, done + 1):
            logits = model(x)
            loss = loss_fn(logits, y)
            optimizer.zero_grad()
            if world > 1:   # the mean gradient over the global batch, on every rank
                share = loader.last_share if sharded else None
                weight = None if share is None or abs(share * world - 1) < 1e-12 else share
            if reducer is not None:
                reducer.prepare(weight)
            loss.backward()
            if reducer is not None:
                reducer.finish()    # the buckets started during backward
            elif world > 1:
                distributed.average_gradients(params, weight)
            optimizer.step()
            if batch_scheduler is not None:
                batch_scheduler.step()
            n = y.shape[0]
            running.update(logits.data, y, loss.data * loss.dtype.type(n))
            seen += n
            pending += 1
            if i % log_every == 0 or i == len(loader):
                current = float(loss.data)  # one sync per log_every batches
                if not math.isfinite(current):
                    raise TrainingDivergedError(
                        f"loss became {current} at epoch {epoch}, batch {i}: training diverged. "
                        f"Lower the learning rate (now {optimizer.lr:g}), check the inputs "
                        "for NaN/inf, or clip gradients (minidl.optim.clip_grad_norm).")
                rate = seen / max(1e-9, time.perf_counter() - start)
                res = running.result()   # this rank's batches: no collective per log line
                bar.update(pending, loss=f"{res['loss']:.4f}", acc=f"{res['accuracy']:.2%}",
                           img_s=f"{rate * (world if sharded else 1):.0f}")
                pending = 0
            if saver is not None and save_every and i % save_every == 0 and i < len(loader):
                saver(False, running)
    finally:
        bar.close()
        if reducer is not None:
            reducer.remove()
    B.synchronize()
    seconds = time.perf_counter() - start
    res = _result(running, loader)
    return {"train_loss": res["loss"], "train_accuracy": res["accuracy"], "lr": optimizer.lr,
            "images_per_s": seen * (world if sharded else 1) / max(seconds, 1e-9)}, seconds


def _epoch_line(r):
    line = (f"epoch {r['epoch']}: train loss {r['train_loss']:.4f} acc {r['train_accuracy']:.2%}")
    if "val_loss" in r:
        line += f" | val loss {r['val_loss']:.4f} acc {r['val_accuracy']:.2%}"
    return line + (f" | {r['seconds']:.1f}s ({r['images_per_s']:.0f} img/s), "
                   f"total {r['elapsed']:.1f}s")
