"""Fine-tune a pre-trained ResNet on a folder of your own photos ("is this a Star Ferry?").

    photos/ferry/*.jpg  photos/other/*.jpg   (one sub-folder per class, JPEG or PNG)

    python examples/finetune.py photos --model resnet18                  # downloads weights
    python examples/finetune.py photos --model resnet18 --weights resnet18-f37072fd.pth
    python examples/finetune.py photos --epochs 6 --unfreeze-after 3     # then the whole net

What it does:

1. Reads the folder (:class:`minidl.data.ImageFolder`: classes are the sorted sub-folder
   names, photos upright by their EXIF orientation) and holds out ``--val-fraction`` of each
   class for validation.
2. Takes the ImageNet network (:func:`minidl.models.hub.pretrained`, torchvision's weights)
   and replaces its 1000-class head ``fc`` by a new ``Linear(features, classes)``.
3. Freezes the backbone (:meth:`minidl.layers.Module.freeze`): its weights get no gradient,
   and since nothing before the head needs one the autograd records no graph through it --
   a step costs a forward pass plus the head's backward.  The backbone runs in eval mode so
   its batch norms keep ImageNet's statistics.  Only the head is given to the optimizer.
4. After ``--unfreeze-after K`` epochs (if given) unfreezes everything and trains the whole
   network, batch norms in training mode, at a tenth of the learning rate.
5. Training images are augmented (random resized crop, horizontal flip, colour jitter);
   validation images are resized and centre-cropped.  Decoding runs in background threads.
6. Prints the validation accuracy per epoch and writes ``OUT/confusion_matrix.png`` and
   ``OUT/finetune.json`` (accuracy, seconds per step frozen and unfrozen).

``--random-init`` skips the weights (a random backbone: offline checks of the plumbing).
"""
from __future__ import annotations

import json
import pathlib
import sys
import time

import numpy

import minidl
from minidl import functions as F
from minidl.data import ImageFolder, ImageFolderLoader
from minidl.data.download import DatasetNotFoundError
from minidl.data.image_transforms import (ColorJitter, ImageCompose,
                                          RandomHorizontalFlip, RandomResizedCrop, ResizeCenterCrop)
from minidl.layers import Linear
from minidl.metrics import confusion_matrix
from minidl.models import get_model, hub
from minidl.optim import Adam
from minidl.plot import plot_confusion_matrix

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from _cli import (Parser, add_backend, fraction, nonnegative_int, positive_float,  # noqa: E402
                  positive_int, run)

MODELS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
CHECKED = {"steps": 0}   # training steps after which no frozen parameter held a gradient
TINY = ("resnet8", "resnet20")   # small CIFAR-style ResNets: no published weights (--random-init)


def build(args, num_classes: int):
    """The network with its new head ``fc`` (num_classes outputs)."""
    if args.random_init:
        print("warning: --random-init: the backbone has random weights", file=sys.stderr)
        model = get_model(args.model, **({"in_channels": 3} if args.model in TINY else {}))
    else:
        try:
            model = hub.pretrained(args.model, weights=args.weights)
        except DatasetNotFoundError as exc:   # offline: one line naming what was tried
            sys.exit(f"error: {' '.join(str(exc).split())} (or pass --weights FILE, or "
                     "--random-init to check the plumbing offline)")
    old = model.fc
    model.set_submodule("fc", Linear(old.in_features, num_classes))
    return model


def set_phase(model, whole: bool):
    """Head only: backbone frozen and in eval mode; whole: everything trains."""
    if whole:
        model.unfreeze().train()
    else:
        model.freeze().eval()
        model.fc.unfreeze().train()


def calibrate_batch_norm(model, loader) -> None:
    """Set every batch norm's running statistics to their average over one pass of
    ``loader`` (no gradients).  Only for ``--random-init``: a random backbone has no ImageNet
    statistics (running mean 0, variance 1), and a frozen one in eval mode would then pass
    un-normalised activations that grow block after block."""
    from minidl.layers import BatchNorm2d
    norms = [m for m in model.modules() if isinstance(m, BatchNorm2d)]
    saved = [m.momentum for m in norms]
    model.train()
    with minidl.no_grad():
        for k, (x, _) in enumerate(loader):
            for m in norms:   # momentum 1/(k+1): the running value is the mean of k+1 batches
                m.momentum = 1.0 / (k + 1)
            model(minidl.Tensor(x))
    for m, momentum in zip(norms, saved):
        m.momentum = momentum


def frozen_with_grad(model) -> list[str]:
    """Names of the frozen parameters that nevertheless hold a gradient (must be none)."""
    return [n for n, p in model.named_parameters() if not p.requires_grad and
            p.grad is not None]


def train_epoch(model, loader, optimizer) -> tuple[float, float, list[float]]:
    """(mean loss, accuracy, seconds per step); checks after every step that no frozen
    parameter received a gradient."""
    losses, correct, seen, times = 0.0, 0, 0, []
    for x, y in loader:
        t0 = time.perf_counter()
        logits = model(minidl.Tensor(x))
        loss = F.softmax_cross_entropy(logits, y)
        optimizer.zero_grad()
        loss.backward()
        leaked = frozen_with_grad(model)
        CHECKED["steps"] += 1
        if leaked:
            raise RuntimeError(f"frozen parameters received gradients: {leaked[:5]}")
        optimizer.step()
        minidl.backend.synchronize()
        times.append(time.perf_counter() - t0)
        losses += float(loss.item()) * len(y)
        correct += int((minidl.to_host(logits.data).argmax(1) == minidl.to_host(y)).sum())
        seen += len(y)
    return losses / seen, correct / seen, times


def evaluate(model, loader, num_classes: int):
    """(accuracy, confusion matrix (C, C) on the host)."""
    model.eval()
    cm = numpy.zeros((num_classes, num_classes), numpy.int64)
    with minidl.no_grad():
        for x, y in loader:
            cm += minidl.to_host(confusion_matrix(model(minidl.Tensor(x)).data, y, num_classes))
    return float(numpy.trace(cm) / max(cm.sum(), 1)), cm


def main(argv=None) -> int:
    p = Parser(description="Fine-tune an ImageNet ResNet on a folder of photos")
    p.add_argument("data_dir", help="a folder with one sub-folder of JPEG/PNG photos per class")
    p.add_argument("--model", choices=MODELS + TINY, default="resnet18",
                   help="the architecture (resnet8/resnet20: tiny, --random-init only)")
    p.add_argument("--weights", default=None,
                   help="a local weight file (torchvision .pth, .npz, .safetensors); "
                        "downloaded (and cached) when omitted")
    p.add_argument("--random-init", action="store_true",
                   help="no pre-trained weights: a random backbone (offline plumbing checks)")
    p.add_argument("--epochs", type=positive_int, default=5, help="epochs in all")
    p.add_argument("--unfreeze-after", type=nonnegative_int, default=None, metavar="K",
                   help="train the head alone for K epochs, then the whole network "
                        "(default: the head only, throughout)")
    p.add_argument("--size", type=positive_int, default=224, help="input crop (pixels)")
    p.add_argument("--min-crop", type=fraction, default=0.08,
                   help="smallest area fraction of a random resized crop (torchvision: 0.08)")
    p.add_argument("--batch-size", type=positive_int, default=16)
    p.add_argument("--lr", type=positive_float, default=0.001,
                   help="Adam learning rate of the head (the whole net gets a tenth)")
    p.add_argument("--val-fraction", type=fraction, default=0.2,
                   help="share of every class held out for validation")
    p.add_argument("--workers", type=positive_int, default=2, help="decoding threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="finetune_out", help="folder for the plot and JSON")
    add_backend(p)
    args = p.parse_args(argv)
    if args.random_init and args.weights:
        p.error("--random-init and --weights exclude each other")
    if args.model in TINY and not args.random_init:
        p.error(f"--model {args.model} has no pre-trained weights; add --random-init")
    if args.unfreeze_after is not None and args.unfreeze_after > args.epochs:
        p.error(f"--unfreeze-after ({args.unfreeze_after}) must not exceed --epochs "
                f"({args.epochs})")
    try:
        minidl.use_backend(args.backend)
    except minidl.BackendUnavailableError as exc:
        sys.exit(f"error: {exc}")
    minidl.seed(args.seed)

    full = ImageFolder(args.data_dir)   # before the weights: a wrong folder fails at once
    if len(full) < 2 * len(full.classes):
        raise ValueError(f"{args.data_dir!r}: need at least 2 photos per class for a "
                         f"validation split, got {len(full)} for {len(full.classes)} classes")
    train_idx, val_idx = full.split(args.val_fraction, seed=args.seed)
    augment = ImageCompose([RandomResizedCrop(args.size, scale=(args.min_crop, 1.0)),
                            RandomHorizontalFlip(),
                            ColorJitter(0.4, 0.4, 0.4)])
    train = ImageFolderLoader(full.subset(train_idx, augment), args.batch_size, shuffle=True,
                              seed=args.seed, workers=args.workers)
    val = ImageFolderLoader(full.subset(val_idx, ResizeCenterCrop(args.size)),
                            args.batch_size, workers=args.workers)
    classes = full.classes
    print(f"{len(full)} photos, classes {', '.join(classes)}: {len(train_idx)} train, "
          f"{len(val_idx)} validation; {args.model}, {args.size}x{args.size}")
    model = build(args, len(classes))
    if args.random_init:
        calibrate_batch_norm(model, train)
    whole_from = args.epochs if args.unfreeze_after is None else args.unfreeze_after
    step_times = {"frozen": [], "unfrozen": []}
    acc, cm, optimizer, phase, epochs = 0.0, None, None, None, []
    for epoch in range(1, args.epochs + 1):
        whole = epoch > whole_from
        if whole != phase:
            set_phase(model, whole)
            trainable = model.trainable_parameters()
            optimizer = Adam(trainable, lr=args.lr / 10 if whole else args.lr)
            print(("whole network" if whole else "head only (backbone frozen)") +
                  f": {sum(q.size for q in trainable):,} of {model.num_parameters():,} "
                  "parameters train")
            phase = whole
        set_phase(model, whole)   # evaluate() left everything in eval mode
        loss, train_acc, times = train_epoch(model, train, optimizer)
        step_times["unfrozen" if whole else "frozen"] += times
        acc, cm = evaluate(model, val, len(classes))
        epochs.append({"epoch": epoch, "phase": "whole" if whole else "head",
                       "train_loss": loss, "train_accuracy": train_acc, "val_accuracy": acc,
                       "frozen_parameters": sum(not q.requires_grad
                                                for q in model.parameters())})
        print(f"epoch {epoch}: train loss {loss:.4f}, train acc {train_acc:.1%}, "
              f"validation acc {acc:.1%}, {numpy.median(times):.3f} s/step")
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    plot_confusion_matrix(cm, out / "confusion_matrix.png", list(classes))
    per_step = {k: (float(numpy.median(v)) if v else None) for k, v in step_times.items()}
    (out / "finetune.json").write_text(json.dumps({
        "model": args.model, "size": args.size, "classes": list(classes),
        "val_accuracy": acc, "confusion_matrix": cm.tolist(),
        "seconds_per_step": per_step, "batch_size": args.batch_size,
        "epochs": epochs, "steps_checked_without_frozen_gradients": CHECKED["steps"]},
        indent=2))
    print(f"validation accuracy: {acc:.1%} ({int(numpy.trace(cm))}/{int(cm.sum())})")
    print("seconds per step: " + ", ".join(f"{k} {v:.3f}" for k, v in per_step.items()
                                           if v is not None))
    print(f"confusion matrix: {out / 'confusion_matrix.png'}")
    return 0


if __name__ == "__main__":
    run(main)
