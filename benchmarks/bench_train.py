"""Training throughput of the MNIST examples' networks: minidl vs PyTorch CPU (and CuPy).

For the MLP (784-512-256-10) and the main-job CNN (examples/mnist_cnn.py) at batch 128, each
framework trains the *same* architecture with the same optimizer (Adam) on the same MNIST-shaped
batches for a fixed number of steps.  Reported: images/s, the implied seconds per 60,000-image
epoch, and peak resident memory.  Each (framework, model) runs in a fresh subprocess so that the
peak memory (``VmHWM``) is its own and no thread pool or allocator state leaks between them.

    python -m benchmarks.bench_train [--steps 60] [--threads 2]
    python -m benchmarks.bench_train --time-to-accuracy [--seeds 3] [--first-seed 0]  # full runs

Like ``bench_layers`` it re-runs itself with glibc settings that keep freed memory, which every
child inherits (``--page-faults``: glibc's defaults).  Without them PyTorch's steps here
page-fault fresh memory and swing from 33 to 49 ms between runs; with them, 32 ms.

``--time-to-accuracy`` trains the CNN recipe (8 epochs, Adam + one-cycle, random shifts) with
minidl and with PyTorch on real MNIST and reports the training time until the test accuracy
first reaches 99.0%.  It takes 10-20 minutes on a 2-core CPU.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))

from benchmarks._common import (cupy_backend, print_table, rerun_with_steady_malloc,  # noqa: E402
                                save_json, use_threads)

BATCH = 128


def _batches(steps, seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    x = rng.random((steps, BATCH, 1, 28, 28), dtype=np.float32)
    y = rng.integers(0, 10, (steps, BATCH))
    return x, y


def _run_minidl(model_name: str, steps: int, warmup: int, backend: str) -> dict:
    import minidl
    from minidl.functions import softmax_cross_entropy
    from minidl.optim import Adam
    from mnist_cnn import build_cnn
    from mnist_mlp import build_mlp

    minidl.use_backend(backend)
    b = minidl.get_backend()
    model = build_cnn() if model_name == "cnn" else build_mlp()
    model = minidl.fuse(model)  # as the examples train it: conv-BN-ReLU-pool blocks as one op
    opt = Adam(model.parameters(), lr=1e-3)
    x, y = _batches(steps + warmup)
    times = []
    for i in range(steps + warmup):
        xb, yb = minidl.to_device(x[i]), minidl.to_device(y[i])
        t0 = time.perf_counter()
        loss = softmax_cross_entropy(model(minidl.tensor(xb)), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        b.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return {"seconds_per_step": sorted(times)[len(times) // 2]}


def _torch_model(model_name):
    import torch.nn as nn
    if model_name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Dropout(0.2),
                             nn.Linear(512, 256), nn.ReLU(), nn.Dropout(0.2),
                             nn.Linear(256, 10))
    return nn.Sequential(
        nn.Conv2d(1, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(),
        nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Dropout(0.25), nn.Linear(128, 10))


def _run_torch(model_name: str, steps: int, warmup: int, threads: int) -> dict:
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = _torch_model(model_name)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = _batches(steps + warmup)
    times = []
    for i in range(steps + warmup):
        xb, yb = torch.from_numpy(x[i]), torch.from_numpy(y[i])
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return {"seconds_per_step": sorted(times)[len(times) // 2]}


def _peak_rss_mb() -> float:
    """This process's peak resident memory in MB.  Linux's ``VmHWM`` belongs to the program
    exec'd here; ``ru_maxrss`` would also count the parent's peak from before the fork (every
    child of ``python -m benchmarks`` then reported the parent's 635 MB)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _child(args) -> None:
    """Run one measurement in this (fresh) process and print it as JSON."""
    use_threads(args.threads)  # minidl's host threads too (OpenBLAS: from the environment)
    if args.framework == "torch":
        out = _run_torch(args.model, args.steps, args.warmup, args.threads)
    else:
        out = _run_minidl(args.model, args.steps, args.warmup, args.framework)
    out["peak_rss_mb"] = _peak_rss_mb()
    print("RESULT " + json.dumps(out))


def _measure(framework, model, steps, warmup, threads) -> dict | str:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-m", "benchmarks.bench_train", "--child", "--framework", framework,
           "--model", model, "--steps", str(steps), "--warmup", str(warmup),
           "--threads", str(threads)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    reason = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return f"not available ({reason[:60]})"


def _interleaved(model, args) -> dict:
    """Each framework measured ``args.rounds`` times, the frameworks taking turns, so that all
    see the same load on a shared machine: the median step time and the largest peak memory
    of the rounds (or the reason it is not available)."""
    runs = {fw: [] for fw in ("numpy", "cupy", "torch")}
    for _ in range(args.rounds):
        for fw in runs:
            if runs[fw] and isinstance(runs[fw][0], str):
                continue  # not available: no need to ask again
            runs[fw].append(_measure(fw, model, args.steps, args.warmup, args.threads))
    out = {}
    for fw, rs in runs.items():
        if isinstance(rs[0], str):
            out[fw] = rs[0]
            continue
        steps = sorted(r["seconds_per_step"] for r in rs)
        out[fw] = {"seconds_per_step": steps[len(steps) // 2],
                   "rounds_seconds_per_step": [r["seconds_per_step"] for r in rs],
                   "peak_rss_mb": max(r["peak_rss_mb"] for r in rs)}
    return out


def _time_to_accuracy_run(cmd, threads) -> dict:
    # this checkout's minidl, installed or not
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               MINIDL_NUM_THREADS=str(threads), PYTHONPATH=path)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    ttt = acc = None
    epochs = []  # training seconds of each epoch, as the script printed them
    for line in proc.stdout.splitlines():
        if line.startswith("time to"):
            ttt = float(line.split(":")[1].split("s")[0])
        if line.startswith("test accuracy"):
            acc = float(line.split()[2].rstrip("%")) / 100
        words = line.split()
        if len(words) == 3 and words[0].isdigit() and words[1].endswith("%"):
            epochs.append(float(words[2]))  # minidl's summary: "epoch  test acc  train s"
        if line.startswith("epoch ") and line.rstrip().endswith("s of training"):
            total = float(line.split(",")[-1].split("s of")[0])  # torch: cumulative seconds
            epochs.append(round(total - sum(epochs), 2))
    if proc.returncode not in (0, 1) or not epochs:  # 1 is a missed target; anything else
        print(proc.stdout[-2000:], proc.stderr[-2000:])  # (or no epoch at all) is a failure
    return {"time_to_99_s": ttt, "final_accuracy": acc, "wall_s": wall,
            "epoch_s": epochs, "returncode": proc.returncode}


def time_to_accuracy(threads: int, seeds: int = 1, first_seed: int = 0) -> dict:
    """Full CNN trainings on real MNIST: minidl (examples/mnist_cnn.py, also on CuPy when a GPU
    is present) and the same recipe in PyTorch (benchmarks/torch_mnist_cnn.py), for ``seeds``
    seeds from ``first_seed`` on, taking turns.  Each prints its time to 99.0%; the epoch that
    first gets there varies a lot from seed to seed (PyTorch: epoch 2 to 6 in our runs), so
    several seeds and their median are the fair comparison.  A run that never reaches 99%
    counts as infinitely slow in the median."""
    cmds = {"minidl numpy": lambda seed: [sys.executable, "examples/mnist_cnn.py", "--quiet",
                                          "--seed", str(seed), "--out", "runs/bench_cnn"],
            "torch CPU": lambda seed: [sys.executable, "benchmarks/torch_mnist_cnn.py",
                                       "--threads", str(threads), "--seed", str(seed)]}
    if cupy_backend() is not None:  # the same script on the GPU, where there is one
        cmds["minidl cupy"] = lambda seed: [sys.executable, "examples/mnist_cnn.py", "--quiet",
                                            "--backend", "cupy", "--seed", str(seed),
                                            "--out", "runs/bench_cnn_cupy"]
    runs = {name: [] for name in cmds}
    for seed in range(first_seed, first_seed + seeds):
        for name, cmd in cmds.items():
            runs[name].append(dict(_time_to_accuracy_run(cmd(seed), threads), seed=seed))
    results = {}
    for name, rs in runs.items():
        times = sorted(r["time_to_99_s"] if r["time_to_99_s"] is not None else float("inf")
                       for r in rs)
        median = times[len(times) // 2] if len(times) % 2 else sum(
            times[len(times) // 2 - 1:len(times) // 2 + 1]) / 2
        epoch_s = sorted(t for r in rs for t in r["epoch_s"])
        results[name] = {"time_to_99_s": median if median != float("inf") else None,
                         "epoch_s": epoch_s[len(epoch_s) // 2] if epoch_s else None,
                         "final_accuracy": sorted(r["final_accuracy"] or 0 for r in rs)[
                             len(rs) // 2],
                         "wall_s": sum(r["wall_s"] for r in rs) / len(rs), "runs": rs}
    return results


def _ratio(a, b) -> str:
    return f"{a / b:.2f}x" if a and b else "n/a"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3,
                   help="measurements per framework, taken in turns (median reported)")
    p.add_argument("--time-to-accuracy", action="store_true")
    p.add_argument("--seeds", type=int, default=1,
                   help="seeds per framework for --time-to-accuracy (median reported)")
    p.add_argument("--first-seed", type=int, default=0,
                   help="the first of those seeds (more seeds in a later run)")
    p.add_argument("--page-faults", action="store_true",
                   help="time with glibc's default malloc (see benchmarks.bench_layers)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--framework", default="numpy", help=argparse.SUPPRESS)
    p.add_argument("--model", default="cnn", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return _child(args)

    rows, results = [], []
    for model in ("mlp", "cnn"):
        m = _interleaved(model, args)

        def ips(r):
            return BATCH / r["seconds_per_step"] if isinstance(r, dict) else None

        def epoch_s(r):
            return 60000 / ips(r) if isinstance(r, dict) else None

        def rss(r):
            return r["peak_rss_mb"] if isinstance(r, dict) else None

        ratio = (epoch_s(m["numpy"]) / epoch_s(m["torch"])
                 if isinstance(m["torch"], dict) and isinstance(m["numpy"], dict) else None)
        gpu_speedup = (epoch_s(m["numpy"]) / epoch_s(m["cupy"])
                       if isinstance(m["cupy"], dict) else None)
        rows.append([model, ips(m["numpy"]), epoch_s(m["numpy"]), rss(m["numpy"]),
                     ips(m["cupy"]) or "not available", ips(m["torch"]) or "not available",
                     epoch_s(m["torch"]) or "n/a", rss(m["torch"]) or "n/a",
                     f"{ratio:.2f}x" if ratio else "n/a",
                     f"{gpu_speedup:.1f}x" if gpu_speedup else "not available"])
        results.append({"model": model, "batch": BATCH, "threads": args.threads,
                        "minidl_numpy": m["numpy"], "minidl_cupy": m["cupy"],
                        "torch_cpu": m["torch"], "epoch_time_ratio_vs_torch": ratio,
                        "gpu_speedup": gpu_speedup})
    table = print_table(
        f"Training throughput, batch {BATCH}, {args.threads} threads (median of {args.steps} "
        f"steps; median of {args.rounds} rounds taken in turns)",
        ["model", "numpy img/s", "numpy s/epoch", "numpy MB", "cupy img/s", "torch img/s",
         "torch s/epoch", "torch MB", "numpy/torch time", "GPU speed-up"], rows)
    payload = {"results": results, "table": table}
    if args.time_to_accuracy:
        tta = time_to_accuracy(args.threads, args.seeds, args.first_seed)
        print_table(f"CNN time to 99.0% test accuracy (s of training; median of {args.seeds} "
                    "seeds) and the median epoch of those full runs",
                    ["framework", "time to 99%", "per seed", "final acc", "s/epoch",
                     "epoch vs torch", "wall s"],
                    [[k, v["time_to_99_s"] or "not reached",
                      " ".join(str(r["time_to_99_s"]) for r in v["runs"]),
                      f"{v['final_accuracy']:.2%}" if v["final_accuracy"] else "n/a",
                      v["epoch_s"] or "n/a",
                      _ratio(v["epoch_s"], tta.get("torch CPU", {}).get("epoch_s")),
                      v["wall_s"]] for k, v in tta.items()])
        payload["time_to_accuracy"] = tta
    save_json("train", payload)


if __name__ == "__main__":
    rerun_with_steady_malloc("benchmarks.bench_train", sys.argv[1:])  # children inherit it
    main()
