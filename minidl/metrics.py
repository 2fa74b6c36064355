"""Classification metrics on any backend: accuracy, top-k accuracy, confusion matrix.

They accumulate on the device and hand one small host array back at the end, so that an
evaluation over many batches costs one device->host copy, not one per batch.
"""
from __future__ import annotations

import numpy

from minidl import backend as B

__all__ = ["accuracy", "topk_correct", "confusion_matrix", "RunningMetrics"]


def _arrays(logits, labels, where: str):
    logits = getattr(logits, "data", logits) if hasattr(logits, "creator") else logits
    labels = getattr(labels, "data", labels) if hasattr(labels, "creator") else labels
    if logits.ndim != 2:
        raise ValueError(f"{where}: logits must be 2-D (N, C), got shape {logits.shape}")
    if labels.shape != (logits.shape[0],):
        raise ValueError(f"{where}: labels must have shape ({logits.shape[0]},), got "
                         f"{labels.shape}")
    return logits, labels


def topk_correct(logits, labels, k: int = 1):
    """Number of rows whose label is among the ``k`` largest logits (a device scalar).

    Ties are broken as ``argmax`` breaks them, by the lower class index first, so that
    ``k=1`` counts exactly the rows where ``argmax == label``.
    """
    logits, labels = _arrays(logits, labels, "topk_correct")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"topk_correct: k must be a positive int, got {k!r}")
    xp = B.get_array_module(logits, labels)
    if k == 1:
        return (logits.argmax(axis=1) == labels).sum()
    idx = labels.reshape(-1, 1).astype(xp.int64)
    label_logit = xp.take_along_axis(logits, idx, axis=1)
    classes = xp.arange(logits.shape[1]).reshape(1, -1)
    # the label's rank: classes that beat it, or tie with it at a lower index
    ahead = (logits > label_logit) | ((logits == label_logit) & (classes < idx))
    return (ahead.sum(axis=1) < k).sum()


def accuracy(logits, labels) -> float:
    """Fraction of rows whose argmax equals the label (a host float)."""
    logits, labels = _arrays(logits, labels, "accuracy")
    return float(topk_correct(logits, labels, 1)) / max(1, labels.shape[0])


def confusion_matrix(logits, labels, num_classes: int):
    """(C, C) counts, rows = true class, columns = predicted class, on the device."""
    logits, labels = _arrays(logits, labels, "confusion_matrix")
    xp = B.get_array_module(logits, labels)
    pred = logits.argmax(axis=1).astype(xp.int64)
    flat = labels.astype(xp.int64) * num_classes + pred
    return xp.bincount(flat, minlength=num_classes * num_classes).reshape(num_classes,
                                                                          num_classes)


class RunningMetrics:
    """Sums of loss, correct and top-k counts, and a confusion matrix over batches."""

    def __init__(self, num_classes: int | None = None, topk=(1,)):
        self.num_classes, self.topk = num_classes, tuple(topk)
        self.count = 0
        self.loss_sum = 0.0
        self.correct = {k: 0 for k in self.topk}
        self.cm = None

    def update(self, logits, labels, loss_sum) -> None:
        """Add one batch; ``loss_sum`` is the summed (not mean) loss over the batch."""
        logits, labels = _arrays(logits, labels, "RunningMetrics.update")
        self.count += labels.shape[0]
        self.loss_sum = self.loss_sum + loss_sum
        for k in self.topk:
            self.correct[k] = self.correct[k] + topk_correct(logits, labels, k)
        if self.num_classes:
            cm = confusion_matrix(logits, labels, self.num_classes)
            self.cm = cm if self.cm is None else self.cm + cm

    def result(self) -> dict:
        """Host values: loss (mean), accuracy, top{k}_accuracy, confusion_matrix (numpy)."""
        n = max(1, self.count)
        out = {"loss": float(self.loss_sum) / n, "accuracy": float(self.correct.get(1, 0)) / n}
        for k in self.topk:
            if k != 1:
                out[f"top{k}_accuracy"] = float(self.correct[k]) / n
        if self.cm is not None:
            out["confusion_matrix"] = numpy.asarray(B.to_host(self.cm))
        return out
