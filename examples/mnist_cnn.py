"""MNIST with a convolutional network: the main job of this library.

A convolution slides small learned filters (3x3 here) over the image, so the same feature
detector -- an edge, a stroke end -- is looked for everywhere; pooling then keeps the strongest
response in each 2x2 patch, halving the resolution.  Two such stages turn a 28x28 digit into
64 feature maps of 7x7, which a small dense classifier maps to 10 digit scores:

    1x28x28 -conv3x3-> 32x28x28 -BN-ReLU-maxpool-> 32x14x14
            -conv3x3-> 64x14x14 -BN-ReLU-maxpool-> 64x7x7 -> 128 -> 10

Batch normalisation keeps each layer's inputs well scaled so that a high learning rate works;
random shifts of up to 2 pixels augment the training set.  Adam with a one-cycle schedule
trains it to >= 99.2% test accuracy in a few minutes on a 2-core laptop CPU.  After every epoch
the test accuracy is printed; the time to first reach 99.0% is reported (DAWNBench-style).

    python examples/mnist_cnn.py                  # CPU (NumPy)
    python examples/mnist_cnn.py --backend cupy   # GPU (CuPy), same code
    mpiexec -n 2 python examples/mnist_cnn.py     # data-parallel on 2 processes, same code
    mpiexec -n 2 python examples/mnist_cnn.py --sync-bn   # batch norm over all 128 images
    python examples/mnist_cnn.py --resume runs/mnist_cnn/last.npz   # after a crash

Exit status 1 when the final test accuracy misses ``--target-acc``.
"""
from __future__ import annotations

import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import minidl  # noqa: E402
from minidl import layers as L  # noqa: E402
from minidl.data import DataLoader, RandomShift, load_mnist  # noqa: E402
from minidl.optim import Adam, OneCycleLR  # noqa: E402
from minidl.train import evaluate, fit  # noqa: E402

from minidl import distributed  # noqa: E402

from _cli import (base_parser, fit_state_args, load_splits, report, run, setup,  # noqa: E402
                  summarize, test_batch_size)


def build_cnn(num_classes: int = 10, width: int = 32, init: str = "torch") -> L.Module:
    """Two conv-BN-ReLU-pool stages and a small dense head (28x28x1 inputs).

    Weights start at U(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's default, rather than He's
    sqrt(6) times larger bound: batch norm undoes the scale of a conv's weights, so Adam's
    fixed-size steps move small weights relatively further, and the net reaches 99% in about
    half the epochs."""
    return L.Sequential(
        L.Conv2d(1, width, 3, padding=1, bias=False, init=init), L.BatchNorm2d(width),
        L.ReLU(), L.MaxPool2d(2),
        L.Conv2d(width, 2 * width, 3, padding=1, bias=False, init=init),
        L.BatchNorm2d(2 * width), L.ReLU(), L.MaxPool2d(2),
        L.Flatten(),
        L.Linear(2 * width * 7 * 7, 128, init=init), L.ReLU(), L.Dropout(0.25),
        L.Linear(128, num_classes, init=init),
    )


def add_sync_bn(p) -> None:
    """The ``--sync-bn`` flag of the data-parallel examples with batch norm."""
    p.add_argument("--sync-bn", action="store_true",
                   help="under mpiexec: batch norm over the global batch of all processes "
                        "(SyncBatchNorm, 3 small allreduces per layer per step) instead of "
                        "each process's share; no effect in one process")


def maybe_sync_bn(model, args):
    """``model`` with synchronised batch norm when ``--sync-bn`` is given under mpiexec
    (before ``minidl.fuse``, which then leaves those layers unfused)."""
    if not getattr(args, "sync_bn", False):
        return model
    n = distributed.world_size()
    if n == 1:
        print("--sync-bn: one process, nothing to synchronise (plain batch norm)")
        return model
    from minidl.distributed.sync_batchnorm import convert_sync_batchnorm
    print(f"--sync-bn: batch-norm statistics over the global batch of {n} processes")
    return convert_sync_batchnorm(model)


def train_cnn(args, load=load_mnist, class_names=None, time_to=0.99) -> int:
    """Train ``build_cnn`` on a 28x28 data set with ``args`` from the CLI; returns the exit
    status.  Shared with fashion_mnist_cnn.py."""
    setup(args)
    (x_train, y_train), (x_test, y_test) = load_splits(load, args)
    # shard: under mpiexec each process takes its share of every batch (no-op otherwise)
    train = DataLoader(x_train, y_train, batch_size=args.batch_size, shuffle=True,
                       seed=args.seed, transform=RandomShift(2), shard=True)
    test = DataLoader(x_test, y_test, batch_size=test_batch_size(), shuffle=False, shard=True)

    model = build_cnn(num_classes=len(class_names) if class_names else 10)
    print(model.summary((1, 1, 28, 28)))
    model = maybe_sync_bn(model, args)
    model = minidl.fuse(model)  # each conv-BN-ReLU-pool block runs as one op (same values)
    optimizer = Adam(model.parameters(), lr=args.lr)
    schedule = OneCycleLR(optimizer, max_lr=args.lr, total_steps=args.epochs * len(train))
    out = pathlib.Path(args.out)
    start = time.perf_counter()
    history = fit(model, train, optimizer, epochs=args.epochs, val_loader=test,
                  scheduler=schedule, scheduler_per_batch=True, checkpoint=out / "best.npz",
                  target_accuracy=time_to, num_classes=len(class_names or range(10)),
                  progress=not args.quiet, **fit_state_args(args, out))
    wall = time.perf_counter() - start
    if distributed.is_main():
        history.save_plots(out, class_names)
    final = evaluate(model, test)
    summarize(history, time_to, wall, out)
    return report(final["accuracy"], args.target_acc)


def main(argv=None) -> int:
    p = base_parser("MNIST CNN: a convolutional network on MNIST", epochs=8, batch_size=128,
                    target=0.992, lr=3e-3)
    add_sync_bn(p)
    args = p.parse_args(argv)
    return train_cnn(args)


if __name__ == "__main__":
    run(main)
