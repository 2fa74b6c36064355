"""Where a training step's time goes: minidl's per-op profile next to PyTorch's.

The main-job CNN (examples/mnist_cnn.py; or the MLP) takes ``--steps`` Adam steps at batch 128
on MNIST-shaped batches, once under :func:`minidl.profiler.profile` and once under
``torch.profiler`` with the same architecture.  Both tables are in milliseconds per step;
PyTorch's rows are its aten ops (self CPU time), so its convolution backward is one row where
minidl has one per layer.

    python -m benchmarks.profile_train [--model cnn] [--steps 30] [--threads 2]

``--threads`` sets both libraries' threads: PyTorch's, and minidl's (its host threads and NumPy's
OpenBLAS).

Writes benchmarks/results/profile_train.json.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))

from benchmarks._common import save_json, torch_or_none, use_threads  # noqa: E402
from benchmarks.bench_train import BATCH, _batches, _torch_model  # noqa: E402


def profile_minidl(model_name: str, steps: int, warmup: int, backend: str):
    import minidl
    from minidl.functions import softmax_cross_entropy
    from minidl.optim import Adam
    from minidl.profiler import profile
    from mnist_cnn import build_cnn
    from mnist_mlp import build_mlp

    minidl.use_backend(backend)
    model = build_cnn() if model_name == "cnn" else build_mlp()
    model = minidl.fuse(model)  # as the examples train it: conv-BN-ReLU-pool blocks as one op
    opt = Adam(model.parameters(), lr=1e-3)
    x, y = _batches(steps + warmup)
    xs = [minidl.to_device(a) for a in x]
    ys = [minidl.to_device(a) for a in y]

    def step(i):
        loss = softmax_cross_entropy(model(minidl.tensor(xs[i])), ys[i])
        opt.zero_grad()
        loss.backward()
        opt.step()

    for i in range(warmup):
        step(i)
    with profile() as prof:
        for i in range(warmup, warmup + steps):
            step(i)
    return prof


def profile_torch(torch, model_name: str, steps: int, warmup: int):
    import torch.nn.functional as F
    from torch.profiler import profile

    torch.manual_seed(0)
    model = _torch_model(model_name)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = _batches(steps + warmup)

    def step(i):
        loss = F.cross_entropy(model(torch.from_numpy(x[i])), torch.from_numpy(y[i]))
        opt.zero_grad()
        loss.backward()
        opt.step()

    for i in range(warmup):
        step(i)
    t0 = time.perf_counter()
    with profile() as prof:
        for i in range(warmup, warmup + steps):
            step(i)
    wall = time.perf_counter() - t0
    rows = sorted(((e.key, e.count // steps, e.self_cpu_time_total / 1e3 / steps)
                   for e in prof.key_averages()), key=lambda r: -r[2])
    return rows, wall / steps * 1e3


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", choices=["cnn", "mlp"], default="cnn")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--backend", default="numpy", choices=["numpy", "cupy"])
    p.add_argument("--top", type=int, default=14, help="rows shown per table")
    args = p.parse_args(argv)

    # PyTorch first, then a pause: its OpenMP threads spin for a while after each op, and
    # minidl's threads must not be timed against them (nor PyTorch against minidl's)
    torch = torch_or_none(args.threads)
    use_threads(args.threads)
    torch_rows = profile_torch(torch, args.model, args.steps, args.warmup) if torch else None
    time.sleep(1.0)
    prof = profile_minidl(args.model, args.steps, args.warmup, args.backend)
    print(f"minidl ({args.backend}), {args.model}, batch {BATCH}: milliseconds per step")
    print(prof.table(top=args.top, per=args.steps))
    payload = {"model": args.model, "batch": BATCH, "threads": args.threads,
               "steps": args.steps, "minidl": {"ms_per_step": prof.wall * 1e3 / args.steps,
                                               "ops": prof.as_dict(per=args.steps)}}
    if torch_rows is not None:
        rows, ms = torch_rows
        print(f"\nPyTorch CPU, {args.model}, batch {BATCH}: milliseconds per step "
              f"(self CPU time; {ms:.1f} ms per step under the profiler)")
        print(f"{'op':<52} {'calls':>6} {'ms':>9}")
        for name, calls, t in rows[:args.top]:
            print(f"{name[:52]:<52} {calls:>6} {t:>9.2f}")
        payload["torch"] = {"ms_per_step": ms,
                            "ops": [{"op": n, "calls": c, "ms": t} for n, c, t in rows]}
        print(f"\nstep time minidl / torch: {prof.wall * 1e3 / args.steps / ms:.2f}x "
              "(both under their profilers)")
    print()
    save_json("profile_train", payload)


if __name__ == "__main__":
    main()
