"""What overlapping the gradient allreduce costs where there is nothing to overlap.

1. The autograd's "gradient ready" hooks: a small MLP's training step (forward, backward,
   SGD) with this tree's autograd and no hook, with the old autograd (``--old PATH``: a
   checkout without the hooks), and with a hook on every parameter (a Reducer over the
   one-process communicator: edge counting, hook calls, bucket flattening).  Alternating
   fresh processes, medians over ``--rounds``; each round's ratio to the old tree.
2. The Reducer's MPI progress thread: the fused MNIST CNN's step (batch 64, one thread) with
   a poller thread testing a request that never completes every 0.2, 1, 2 and 5 ms, against
   none, alternating in one process: what its GIL hand-offs cost the compute.

    python -m benchmarks.bench_reducer_cost --old /path/to/old/checkout [--rounds 5]

Tables on stdout; JSON in benchmarks/results/bench_reducer_cost.json.
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


def poller_cost(rounds: int) -> dict:
    """Seconds per CNN step with a progress thread polling every interval (ms) or none."""
    sys.path.insert(0, str(ROOT / "examples"))
    import numpy as np

    import minidl
    from minidl.distributed import reducer as R
    from minidl.distributed.comm import Work
    from minidl.functions import softmax_cross_entropy
    from mnist_cnn import build_cnn

    class Never(Work):
        def test(self):
            return False

    class Bucket:
        work = Never()

    model = minidl.fuse(build_cnn())
    x = minidl.tensor(np.random.default_rng(0).standard_normal((64, 1, 28, 28)))
    y = minidl.to_device(np.arange(64) % 10)

    def step():
        loss = softmax_cross_entropy(model(x), y)
        for p in model.parameters():
            p.grad = None
        loss.backward()
    for _ in range(3):
        step()
    out = {interval: [] for interval in (None, 0.2, 1.0, 2.0, 5.0)}
    for _ in range(rounds):
        for interval in out:
            poller = None if interval is None else R._Poller([Bucket()], interval / 1e3)
            t0 = time.perf_counter()
            for _ in range(5):
                step()
            out[interval].append((time.perf_counter() - t0) / 5)
            if poller is not None:
                poller.stop()
    return out


def _poller_cost_in_a_fresh_process(rounds):
    # one BLAS thread, set before NumPy loads (this process has loaded it already)
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", MINIDL_NUM_THREADS="1", MINIDL_BACKEND="numpy")
    cmd = [sys.executable, "-c", f"import json, runpy; f = runpy.run_path({__file__!r})"
           f"['poller_cost']; print(json.dumps(list(f({rounds}).items())))"]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1200,
                         cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"poller cost failed:\n{out.stderr}")
    return dict((k, v) for k, v in json.loads(out.stdout.strip().splitlines()[-1]))


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
    polls = _poller_cost_in_a_fresh_process(2 * args.rounds)
    none = polls[None]
    print_table(f"fused MNIST CNN step, batch 64, with a progress thread polling (median of "
                f"{2 * args.rounds} alternating rounds of 5 steps)",
                ["poll interval", "ms/step", "vs none (paired)"],
                [["none" if k is None else f"{k:g} ms", statistics.median(v) * 1e3,
                  f"{statistics.median([b / a for a, b in zip(none, v)]):.3f}"]
                 for k, v in polls.items()])
    load = os.getloadavg()[0]
    print(f"(load average {load:.1f} on {os.cpu_count()} CPUs when it ended)")
    save_json("bench_reducer_cost", {"tries_s": tries, "load_average": load,
                                     "rounds": args.rounds, "steps": args.steps,
                                     "poller_s": {str(k): v for k, v in polls.items()}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
