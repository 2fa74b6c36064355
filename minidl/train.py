"""Training and evaluation loops: ``fit`` and ``evaluate``.

``fit`` runs epochs of mini-batch gradient descent with a progress bar (loss, accuracy,
images/s), validates after every epoch, keeps the best weights (optionally as a checkpoint
file), stops early when validation stops improving, stops with a clear error on a NaN/inf
loss, and returns a :class:`History`::

    history = fit(model, train_loader, optimizer, epochs=5, val_loader=test_loader)
    history.save_plots("runs/mnist")     # loss/accuracy curves and confusion matrix, PNG
"""
from __future__ import annotations

import math
import pathlib
import time
from dataclasses import dataclass, field

from minidl import backend as B
from minidl.autograd import no_grad
from minidl.functions import softmax_cross_entropy
from minidl.metrics import RunningMetrics
from minidl.progress import ProgressBar

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
    bar = ProgressBar(total=len(loader), desc="eval", unit="batch", enabled=progress)
    try:
        with no_grad():
            for x, y in loader:
                logits = model(x)
                running.update(logits, y, _loss_sum(loss_fn, logits, y).data)
                bar.update(1)
    finally:
        bar.close()
        model.train(was_training)
    return running.result()


def fit(model, train_loader, optimizer, epochs: int, val_loader=None,
        loss_fn=softmax_cross_entropy, scheduler=None, scheduler_per_batch: bool = False,
        checkpoint=None, patience: int | None = None, monitor: str = "val_accuracy",
        target_accuracy: float | None = None, num_classes: int | None = None,
        log_every: int = 20, progress: bool = True, on_epoch_end=None) -> History:
    """Train ``model`` for ``epochs`` epochs.

    Parameters
    ----------
    train_loader, val_loader : iterables of ``(x, y)`` batches on the model's device, with
        ``len()`` (``minidl.data.DataLoader``).
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
    """
    if not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"fit: epochs must be a positive int, got {epochs!r}")
    if monitor not in ("val_accuracy", "val_loss", "train_accuracy", "train_loss"):
        raise ValueError(f"fit: monitor must be val_accuracy, val_loss, train_accuracy or "
                         f"train_loss, got {monitor!r}")
    if val_loader is None and monitor.startswith("val_"):
        monitor = monitor.replace("val_", "train_")
    higher_is_better = monitor.endswith("accuracy")
    history = History()
    train_seconds = 0.0
    best_state = None
    stale = 0
    for epoch in range(1, epochs + 1):
        record, seconds = _train_one_epoch(model, train_loader, optimizer, loss_fn, epoch,
                                           epochs, scheduler if scheduler_per_batch else None,
                                           log_every, progress)
        train_seconds += seconds
        record.update(epoch=epoch, seconds=seconds, elapsed=train_seconds)
        if val_loader is not None:
            val = evaluate(model, val_loader, loss_fn, num_classes=num_classes)
            record["val_loss"], record["val_accuracy"] = val["loss"], val["accuracy"]
            history.confusion_matrix = val.get("confusion_matrix")
            if (target_accuracy is not None and history.time_to_target is None
                    and val["accuracy"] >= target_accuracy):
                history.time_to_target = train_seconds
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
        if improved:
            history.best_epoch, history.best_value, stale = epoch, value, 0
            if checkpoint is not None:
                model.save(checkpoint)
            else:
                best_state = {k: v.copy() for k, v in model.state_dict().items()}
        else:
            stale += 1
            if patience is not None and stale >= patience:
                history.stopped_early = True
                if progress:
                    print(f"early stop: {monitor} has not improved for {patience} epochs "
                          f"(best {history.best_value:.4f} at epoch {history.best_epoch})")
                break
    _restore_best(model, checkpoint, best_state, history)
    return history


def _restore_best(model, checkpoint, best_state, history):
    if history.best_epoch == history.epochs[-1]["epoch"]:
        return  # the model in hand is already the best one
    if checkpoint is not None:
        model.load(checkpoint)
    elif best_state is not None:
        model.load_state_dict(best_state)


def _train_one_epoch(model, loader, optimizer, loss_fn, epoch, epochs, batch_scheduler,
                     log_every, progress):
    model.train()
    running = RunningMetrics()
    bar = ProgressBar(total=len(loader), desc=f"epoch {epoch}/{epochs}", unit="batch",
                      enabled=progress)
    seen = 0
    pending = 0
    start = time.perf_counter()
    try:
        for i, (x, y) in enumerate(loader, 1):
            logits = model(x)
            loss = loss_fn(logits, y)
            optimizer.zero_grad()
            loss.backward()
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
                res = running.result()
                bar.update(pending, loss=f"{res['loss']:.4f}", acc=f"{res['accuracy']:.2%}",
                           img_s=f"{rate:.0f}")
                pending = 0
    finally:
        bar.close()
    B.synchronize()
    seconds = time.perf_counter() - start
    res = running.result()
    return {"train_loss": res["loss"], "train_accuracy": res["accuracy"], "lr": optimizer.lr,
            "images_per_s": seen / max(seconds, 1e-9)}, seconds


def _epoch_line(r):
    line = (f"epoch {r['epoch']}: train loss {r['train_loss']:.4f} acc {r['train_accuracy']:.2%}")
    if "val_loss" in r:
        line += f" | val loss {r['val_loss']:.4f} acc {r['val_accuracy']:.2%}"
    return line + (f" | {r['seconds']:.1f}s ({r['images_per_s']:.0f} img/s), "
                   f"total {r['elapsed']:.1f}s")
