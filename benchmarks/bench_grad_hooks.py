"""What the autograd's "gradient ready" hooks cost: a small MLP's training step (forward,
backward, SGD) with this tree's autograd and no hook, with the old autograd (``--old PATH``:
a checkout without the hooks), and with a hook on every parameter (a Reducer over the
one-process communicator: edge counting, hook calls, bucket flattening).  Alternating fresh
processes, medians over ``--rounds``; ratios against the old tree.

    python -m benchmarks.bench_grad_hooks --old /work/main [--rounds 5]

Table on stdout; JSON in benchmarks/results/bench_grad_hooks.json.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def worker(mode: str, steps: int) -> tuple[float, str]:
    """Median seconds per step over ``steps`` steps (after 20 warm-up steps), and the minidl
    that ran."""
    import numpy as np

    import minidl
    from minidl import layers as L
    from minidl.functions import softmax_cross_entropy
    from minidl.optim import SGD
    minidl.seed(0)
    model = L.Sequential(L.Linear(64, 128), L.ReLU(), L.Linear(128, 128), L.ReLU(),
                         L.Linear(128, 10))
    opt = SGD(model.parameters(), lr=0.01)
    rng = np.random.default_rng(0)
    x = minidl.tensor(rng.standard_normal((32, 64)))
    y = minidl.to_device(rng.integers(0, 10, 32))
    reducer = None
    if mode == "hooked":
        from minidl.distributed import Reducer, SingleCommunicator
        reducer = Reducer(model.parameters(), comm=SingleCommunicator(), bucket_bytes=2**14,
                          first_bucket_bytes=2**12)
    times = []
    for i in range(20 + steps):
        t0 = time.perf_counter()
        loss = softmax_cross_entropy(model(x), y)
        opt.zero_grad()
        if reducer is not None:
            reducer.prepare()
        loss.backward()
        if reducer is not None:
            reducer.finish()
        opt.step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[20:]), minidl.__file__


def _run(path, mode, steps):
    # minidl from ``path`` (PYTHONPATH, run from a neutral directory); this file by its path
    env = dict(os.environ, PYTHONPATH=str(path), OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", MINIDL_NUM_THREADS="1", MINIDL_BACKEND="numpy")
    cmd = [sys.executable, "-c", f"import runpy; w = runpy.run_path({__file__!r})['worker']; "
           f"print(*w({mode!r}, {steps}))"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600,
                         cwd=pathlib.Path(path).parent)
    if out.returncode != 0:
        raise SystemExit(f"{mode} under {path} failed:\n{out.stderr}")
    seconds, where = out.stdout.strip().splitlines()[-1].split()
    if not where.startswith(str(pathlib.Path(path).resolve())):
        raise SystemExit(f"{mode}: ran minidl from {where}, not from {path}")
    return float(seconds)


def main(argv=None) -> int:
    from benchmarks._common import print_table, save_json
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--old", required=True, help="a checkout without the hooks (the old code)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--steps", type=int, default=300)
    args = p.parse_args(argv)
    configs = [("old tree, plain", args.old, "plain"), ("this tree, plain", ROOT, "plain"),
               ("this tree, hook on every parameter", ROOT, "hooked")]
    tries = {name: [] for name, _, _ in configs}
    for _ in range(args.rounds):
        for name, path, mode in configs:
            tries[name].append(_run(path, mode, args.steps))
    old = tries[configs[0][0]]
    # the ratio within each round (neighbouring processes see the same load), then the median
    rows = [[name, statistics.median(t) * 1e6,
             f"{statistics.median([b / a for a, b in zip(old, t)]):.3f}"]
            for name, t in tries.items()]
    print_table(f"MLP 64-128-128-10, batch 32, one step (median of {args.rounds} alternating "
                f"processes x {args.steps} steps)", ["config", "us/step", "vs old (paired)"], rows)
    load = os.getloadavg()[0]
    print(f"(load average {load:.1f} on {os.cpu_count()} CPUs when it ended)")
    save_json("bench_grad_hooks", {"tries_s": tries, "load_average": load,
                                   "rounds": args.rounds, "steps": args.steps})
    return 0


if __name__ == "__main__":
    sys.exit(main())
