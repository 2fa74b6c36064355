"""The main-job CNN recipe (examples/mnist_cnn.py) in PyTorch, for time-to-accuracy comparisons.

Same architecture, same data pipeline (minidl's loader and RandomShift(2), so both see the same
augmented batches), Adam with PyTorch's OneCycleLR at the same peak rate, same epochs and batch.

    python benchmarks/torch_mnist_cnn.py [--threads 2] [--epochs 8]
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import minidl  # noqa: E402
from minidl.data import DataLoader, RandomShift, load_mnist  # noqa: E402

from benchmarks.bench_train import _torch_model  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None)
    args = p.parse_args(argv)

    import torch
    import torch.nn.functional as F
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    minidl.use_backend("numpy")
    x_train, y_train = load_mnist("train", data_dir=args.data_dir)
    x_test, y_test = load_mnist("test", data_dir=args.data_dir)
    train = DataLoader(x_train, y_train, batch_size=args.batch_size, shuffle=True,
                       seed=args.seed, transform=RandomShift(2))
    test = DataLoader(x_test, y_test, batch_size=1000)
    model = _torch_model("cnn")
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr,
                                                total_steps=args.epochs * len(train))
    train_s, reached, acc = 0.0, None, 0.0
    for epoch in range(1, args.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        for xb, yb in train:
            loss = F.cross_entropy(model(torch.from_numpy(xb)), torch.from_numpy(yb))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        train_s += time.perf_counter() - t0
        model.eval()
        correct = 0
        with torch.no_grad():
            for xb, yb in test:
                correct += int((model(torch.from_numpy(xb)).argmax(1)
                                == torch.from_numpy(yb)).sum())
        acc = correct / len(y_test)
        if reached is None and acc >= 0.99:
            reached = train_s
        print(f"epoch {epoch}: test accuracy {acc:.2%}, {train_s:.1f}s of training", flush=True)
    if reached is not None:
        print(f"time to 99.0% test accuracy: {reached:.1f}s of training")
    print(f"test accuracy {acc:.2%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
