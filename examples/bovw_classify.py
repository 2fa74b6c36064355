"""Classify your own photos with a bag of visual words: "does this picture show a Star Ferry?"

Put the photos in one sub-folder per class (``DATA_DIR/ferry/*.jpg``, ``DATA_DIR/other/*.jpg``)
and run ``python examples/bovw_classify.py DATA_DIR``.

1. **Features**: SIFT keypoints and their 128-number descriptors for every photo.
2. **Vocabulary**: k-means over the *training* photos' descriptors gives K visual words.
3. **Histogram**: each photo becomes the counts of its descriptors' nearest words, weighted by
   tf-idf (words rare across photos count more), square-rooted and scaled to unit length: a
   fixed-length vector of K numbers whatever the number of keypoints.
4. **Classifiers** (minidl), trained on the training photos, judged on held-out validation
   photos (``--val-fraction`` of each class, never seen in training or by the k-means):

   * linear: ``z = w . x + b``.  With two classes this is the lecture's binary task: the
     probability of the second class is ``sigmoid(z) = 1 / (1 + exp(-z))`` and the loss the
     binary log loss ``-[y log p + (1 - y) log(1 - p)]``; with more classes one score per
     class, softmax and the multi-class log loss.
   * MLP: one hidden layer of ``--hidden`` ReLU units before the same output.

Prints the accuracy of each and writes the validation confusion matrices (rows: true class,
columns: predicted) as ``confusion_linear.png`` and ``confusion_mlp.png`` in ``--out``.

``mpiexec -n 2 python examples/bovw_classify.py DATA_DIR`` splits the SIFT extraction between
the processes (each a contiguous block of the photos) and fits the vocabulary with k-means
whose centroid sums and counts are allreduced (minifeat.bovw_distributed); the word counts of
the photos (one short row each) are then shared, and every process trains the same small
classifiers; rank 0 prints and writes.  One process runs the same code.
"""
from __future__ import annotations

import os
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import minidl  # noqa: E402
from minidl import distributed  # noqa: E402
from minidl import functions as F  # noqa: E402
from minidl import layers as L  # noqa: E402
from minidl.optim import Adam  # noqa: E402
from minidl.plot import plot_confusion_matrix  # noqa: E402
from minifeat import BagOfWords  # noqa: E402
from minifeat.bovw_distributed import (  # noqa: E402
    allgather_rows, extract_shard, fit_vocabulary_sharded,
)

from _cli import Parser, fraction, positive_int, run  # noqa: E402
from bovw_search import EXTENSIONS, sift_features  # noqa: E402


def find_classes(root):
    """``(paths, labels, class names)`` from one sub-folder per class (sorted names)."""
    root = pathlib.Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"data folder not found: {str(root)!r}")
    names, paths, labels = [], [], []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted(p for p in d.rglob("*") if p.suffix.lower() in EXTENSIONS)
        if files:
            labels += [len(names)] * len(files)
            paths += files
            names.append(d.name)
    if len(names) < 2:
        raise ValueError(f"{str(root)!r} must hold one sub-folder of images per class, at "
                         f"least 2 classes; found {len(names)} ({names})")
    counts = np.bincount(labels)
    if counts.min() < 2:
        raise ValueError(f"every class needs at least 2 images (one to train, one to "
                         f"validate); {names[int(counts.argmin())]!r} has {counts.min()}")
    return paths, np.asarray(labels), names


def split(labels, val_fraction: float, seed: int):
    """Stratified split: index arrays (train, val), at least one of each class in each."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_val = min(len(idx) - 1, max(1, round(val_fraction * len(idx))))
        val += list(idx[:n_val])
        train += list(idx[n_val:])
    return np.sort(train), np.sort(val)


def encode(paths, train, val, vocab: int, seed: int, features):
    """tf-idf bag-of-words vectors (N, K) of the train and validation photos; the vocabulary
    and the idf come from the training photos only.  ``features(path) -> (xy, descriptors)``
    runs on this process's block of ``paths`` only (all of them in one process)."""
    mine, feats = extract_shard(paths, lambda q: features(q)[1])
    # this process's training photos: a contiguous run of the (sorted) training list
    in_train = np.isin(np.arange(mine.start, mine.stop), train)
    start = int(np.searchsorted(train, mine.start))
    my_train = range(start, start + int(in_train.sum()))
    desc = [d for d, t in zip(feats, in_train) if t]
    total = int(distributed.allreduce_host([sum(len(d) for d in desc)])[0])
    bow = BagOfWords(min(vocab, total), seed=seed, max_iter=10)
    fit_vocabulary_sharded(bow, desc, len(train), indices=my_train)
    D = bow.vocabulary_.shape[1]
    local = bow.counts(np.concatenate(feats) if feats else np.zeros((0, D), np.float32),
                       image_index=np.repeat(np.arange(len(feats)), [len(d) for d in feats]),
                       n_images=len(feats))
    counts = allgather_rows(local, len(paths)).astype(np.float32)   # every photo's counts
    bow.fit_idf(counts[train])
    return bow.weight(counts[train]), bow.weight(counts[val])


def train_classifier(model, x, y, n_classes: int, epochs: int, lr: float):
    """Full-batch Adam on the log loss: binary (sigmoid) for 2 classes, else softmax."""
    opt = Adam(model.parameters(), lr=lr, weight_decay=1e-4)
    x, target = minidl.tensor(x), (y.astype(np.float32)[:, None] if n_classes == 2 else y)
    model.train()
    for _ in range(epochs):
        z = model(x)
        loss = F.binary_cross_entropy_with_logits(z, target) if n_classes == 2 \
            else F.softmax_cross_entropy(z, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return float(loss.item())


def predict(model, x, n_classes: int) -> np.ndarray:
    """Predicted classes: ``sigmoid(z) > 0.5`` (i.e. z > 0) for two classes, else argmax."""
    model.eval()
    with minidl.no_grad():
        z = minidl.to_host(model(minidl.tensor(x)).data)
    return (z[:, 0] > 0).astype(np.int64) if n_classes == 2 else z.argmax(axis=1)


def confusion(y, pred, n: int) -> np.ndarray:
    return np.bincount(y * n + pred, minlength=n * n).reshape(n, n)


def main(argv=None) -> int:
    p = Parser(description="Classify photos (one sub-folder per class) with visual words")
    p.add_argument("data_dir", help="one sub-folder of images per class")
    p.add_argument("--vocab", type=positive_int, default=200, help="K, visual words")
    p.add_argument("--val-fraction", type=fraction, default=0.3,
                   help="share of each class held out for validation")
    p.add_argument("--hidden", type=positive_int, default=64, help="hidden units of the MLP")
    p.add_argument("--epochs", type=positive_int, default=300, help="full-batch Adam steps")
    p.add_argument("--lr", type=float, default=1e-2, help="Adam's learning rate")
    p.add_argument("--max-size", type=positive_int, default=320,
                   help="photos are shrunk so their longer side is at most this (pixels)")
    p.add_argument("--n-features", type=positive_int, default=400,
                   help="the strongest SIFT keypoints kept per photo")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, k-means, weights")
    p.add_argument("--out", default="runs/bovw_classify", help="folder for the PNG files")
    args = p.parse_args(argv)
    if distributed.init() > 1 and not distributed.is_main():
        sys.stdout = open(os.devnull, "w")   # one voice: the others would repeat rank 0
    minidl.seed(args.seed)
    paths, labels, names = find_classes(args.data_dir)
    C = len(names)
    train, val = split(labels, args.val_fraction, args.seed)
    print(f"{len(paths)} photos in {C} classes ({', '.join(names)}): {len(train)} to train, "
          f"{len(val)} to validate")
    t0 = time.perf_counter()
    x_train, x_val = encode(paths, train, val, args.vocab, args.seed,
                            lambda q: sift_features(q, args.max_size, args.n_features))
    K = x_train.shape[1]
    print(f"SIFT + vocabulary of {K} words + tf-idf histograms: "
          f"{time.perf_counter() - t0:.1f} s" + (f" ({distributed.world_size()} processes)"
                                                 if distributed.world_size() > 1 else ""))
    outputs = 1 if C == 2 else C
    task = "sigmoid + binary log loss" if C == 2 else "softmax + log loss"
    models = {"linear": L.Linear(K, outputs),
              "mlp": L.Sequential(L.Linear(K, args.hidden), L.ReLU(), L.Dropout(0.2),
                                  L.Linear(args.hidden, outputs))}
    out = pathlib.Path(args.out)
    if distributed.is_main():
        out.mkdir(parents=True, exist_ok=True)
    print(f"model   train acc  val acc  final train loss ({task})")
    for name, model in models.items():
        loss = train_classifier(model, x_train, labels[train], C, args.epochs, args.lr)
        acc_t = (predict(model, x_train, C) == labels[train]).mean()
        pred = predict(model, x_val, C)
        acc_v = (pred == labels[val]).mean()
        print(f"{name:<7} {acc_t:9.1%} {acc_v:8.1%}  {loss:.4f}")
        if distributed.is_main():
            plot_confusion_matrix(confusion(labels[val], pred, C),
                                  out / f"confusion_{name}.png", names)
    print(f"chance (the largest class): {np.bincount(labels[val]).max() / len(val):.1%}; "
          f"validation confusion matrices in {out}/confusion_linear.png, confusion_mlp.png")
    return 0


if __name__ == "__main__":
    run(main)
