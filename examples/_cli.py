"""Command-line plumbing shared by the MNIST examples (the tutorials themselves are the other
files in this folder)."""
from __future__ import annotations

import argparse
import sys

import minidl


def base_parser(description: str, epochs: int, batch_size: int, target: float,
                lr: float) -> argparse.ArgumentParser:
    """The flags every training example takes."""
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--backend", choices=["numpy", "cupy", "strict"], default="numpy",
                   help="array backend: numpy (CPU) or cupy (GPU); strict is the test stand-in")
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--lr", type=float, default=lr, help="peak learning rate")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None,
                   help="folder with the IDX .gz files (default: $MINIDL_DATA, the cache, "
                        "or download)")
    p.add_argument("--target-acc", type=float, default=target,
                   help="exit with status 1 when the final test accuracy is below this")
    p.add_argument("--limit", type=int, default=None,
                   help="use only the first N training and N test images (smoke tests)")
    p.add_argument("--out", default="runs/" + description.split(":")[0].strip().lower()
                   .replace(" ", "_"), help="folder for the best model and the PNG plots")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def setup(args) -> None:
    """Select the backend and seed everything."""
    try:
        minidl.use_backend(args.backend)
    except minidl.BackendUnavailableError as exc:
        sys.exit(f"error: {exc}")
    minidl.seed(args.seed)


def load_splits(load, args):
    """``(x_train, y_train), (x_test, y_test)`` from a ``minidl.data`` loader, cut to
    ``--limit`` images; a missing or damaged data set ends the program with the loader's
    explanation (what was tried, how to supply the files) instead of a traceback."""
    from minidl.data import ChecksumError, DatasetNotFoundError
    try:
        train, test = (load(split, data_dir=args.data_dir) for split in ("train", "test"))
    except (DatasetNotFoundError, ChecksumError) as exc:
        sys.exit(f"error: {exc}")
    if args.limit:
        train, test = [(x[:args.limit], y[:args.limit]) for x, y in (train, test)]
    return train, test


def summarize(history, time_to: float, wall: float, out) -> None:
    """Print test accuracy and training seconds per epoch, the time to first reach
    ``time_to`` test accuracy (DAWNBench-style), and the wall time."""
    print("epoch  test acc  train s")
    for r in history.epochs:
        print(f"{r['epoch']:>5}  {r['val_accuracy']:8.2%}  {r['seconds']:7.1f}")
    if history.time_to_target is not None:
        print(f"time to {time_to:.1%} test accuracy: {history.time_to_target:.1f}s of training")
    else:
        print(f"test accuracy never reached {time_to:.1%}")
    print(f"wall time {wall:.1f}s (training + evaluation); best model and plots in {out}/")


def report(test_acc: float, target: float) -> int:
    """Print the verdict; return the exit status (0 when the target is met)."""
    ok = test_acc >= target
    print(f"test accuracy {test_acc:.2%} (target {target:.2%}): {'met' if ok else 'MISSED'}")
    return 0 if ok else 1
