"""Data-parallel training on this machine, measured, and a cost model for larger ones.

1. The MNIST CNN (examples/mnist_cnn.py, fused as there) trains ``--steps`` steps of a global
   batch of 128 on MNIST-shaped data as 1 process x 2 threads, then as ``mpiexec -n 2`` x 1
   thread (64 images per rank) with the gradients averaged after backward (blocking), and
   overlapped with it (``distributed.Reducer``: DDP's buckets, then 1 MiB buckets, polled by
   the progress thread or only from the gradient hooks, and with ``--async-progress`` under
   MPICH_ASYNC_PROGRESS=1): seconds per step, images/s, the
   implied 60,000-image epoch, the step's exposed communication time and share, and for the
   overlapped runs the share of gradient bytes already reduced when backward returned.
2. The allreduce itself between the 2 ranks (8 bytes: latency; the CNN's 1.7 MB of
   gradients: bandwidth), which calibrates the ring model for this machine's shared memory.
3. The cost model (docs/distributed.md): per step, compute t_c and a ring allreduce of the
   gradients, t_ar = 2 (N - 1) / N * bytes / bandwidth + 2 (N - 1) * latency; efficiency
   t_c / (t_c + t_ar) without overlap, and t_c / (t_c + max(0, t_ar - f t_c)) with ideal
   overlap (the backward share f = 2/3 of the compute can hide communication), at 2..256
   ranks for the MNIST CNN and ResNet-50 on 10 and 100 Gbit/s and NVLink-class links, with
   the per-rank batch fixed.

    python -m benchmarks.bench_distributed [--steps 40] [--repeat 3] [--async-progress]

Table on stdout; JSON in benchmarks/results/bench_distributed.json.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))

GLOBAL_BATCH = 128
RESNET50_PARAMS = 25_557_032
# links: (name, bytes/s, latency s) -- 10 GbE over TCP, 100 Gbit/s InfiniBand/RoCE (RDMA),
# NVLink-class (NVSwitch; NCCL's bus bandwidth on A100/H100 systems is 150-250 GB/s)
LINKS = [("10 Gbit/s", 1.25e9, 50e-6), ("100 Gbit/s", 12.5e9, 5e-6),
         ("NVLink-class", 150e9, 5e-6)]
RANKS = [2, 4, 8, 16, 32, 64, 128, 256]


def ring_allreduce_seconds(n: int, nbytes: float, bandwidth: float, latency: float) -> float:
    """A ring allreduce over ``n`` ranks: each sends and receives 2 (n - 1) / n of the
    buffer, in 2 (n - 1) latency-bound steps."""
    if n == 1:
        return 0.0
    return 2 * (n - 1) / n * nbytes / bandwidth + 2 * (n - 1) * latency


BACKWARD_SHARE = 2 / 3   # backward is about twice forward: the window an overlap can use


def efficiency(t_compute: float, n: int, nbytes: float, bandwidth: float,
               latency: float, overlap: bool = False) -> float:
    """t_c / (t_c + exposed): exposed = t_ar without overlap; with ideal overlap, what of
    t_ar does not fit under backward (BACKWARD_SHARE of t_c)."""
    t_ar = ring_allreduce_seconds(n, nbytes, bandwidth, latency)
    exposed = max(0.0, t_ar - BACKWARD_SHARE * t_compute) if overlap else t_ar
    return t_compute / (t_compute + exposed)


# --------------------------------------------------------------------------- the worker

def worker(steps: int, overlap: bool = False, bucket_kb: int | None = None,
           progress: str = "auto", poll_ms: float = 2.0) -> None:
    """One rank (or the single process): time ``steps`` steps, print a RESULT line (rank 0).

    ``overlap``: average through a :class:`~minidl.distributed.Reducer` (buckets started
    during backward; the exposed time is what ``finish()`` takes) instead of
    ``average_gradients`` after a barrier (the wait for the slower rank, then the transfer)."""
    import numpy as np

    import minidl
    from minidl import distributed
    from minidl.data import DataLoader
    from minidl.functions import softmax_cross_entropy
    from minidl.optim import Adam
    from mnist_cnn import build_cnn

    n = distributed.init()
    minidl.seed(0)
    rng = np.random.default_rng(0)
    count = GLOBAL_BATCH * (steps + 5)
    x = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, count)
    loader = DataLoader(x, y, batch_size=GLOBAL_BATCH, shuffle=True, seed=0, shard=True)
    model = minidl.fuse(build_cnn())
    distributed.broadcast_model(model)
    opt = Adam(model.parameters(), lr=1e-3)
    params = opt.params
    reducer = None
    if overlap and n > 1:
        sizes = {} if bucket_kb is None else {
            "bucket_bytes": bucket_kb * 1024,
            "first_bucket_bytes": min(bucket_kb * 1024, distributed.FIRST_BUCKET_BYTES)}
        reducer = distributed.Reducer(params, progress=None if progress == "none" else progress,
                                      poll_interval=poll_ms / 1e3, **sizes)
    t_ar = t_wait = t_exposed = t_step = hidden = 0.0
    for i, (xb, yb) in enumerate(loader):
        if i == 5:   # after warm-up: kernels chosen, buffers allocated
            distributed.barrier()
            t_ar = t_wait = t_exposed = hidden = 0.0
            start = time.perf_counter()
        if i == 5 + steps:
            break
        loss = softmax_cross_entropy(model(xb), yb)
        opt.zero_grad()
        if reducer is not None:
            reducer.prepare()
        loss.backward()
        t0 = time.perf_counter()
        if reducer is not None:
            reducer.finish()
            hidden += reducer.hidden_bytes
        else:
            if n > 1:   # waiting for the slower rank, apart from the transfer itself
                distributed.barrier()
            t1 = time.perf_counter()
            distributed.average_gradients(params)
            t_wait += t1 - t0
            t_ar += time.perf_counter() - t1
        t_exposed += time.perf_counter() - t0
        opt.step()
    t_step = (time.perf_counter() - start) / steps
    grads = np.concatenate([p.grad.ravel() for p in params])
    link = _link(grads) if n > 1 else None
    if distributed.is_main():
        print("RESULT " + json.dumps({
            "processes": n, "threads": int(os.environ.get("MINIDL_NUM_THREADS", "0")),
            "overlap": reducer is not None, "buckets": repr(reducer) if reducer else None,
            "bucket_sizes": [sum(p.data.nbytes for p in b.params) for b in reducer.buckets]
            if reducer else None,
            "async_progress": os.environ.get("MPICH_ASYNC_PROGRESS") == "1",
            "progress": reducer.progress if reducer else None, "poll_ms": poll_ms,
            "s_per_step": t_step, "allreduce_s_per_step": t_ar / steps,
            "wait_s_per_step": t_wait / steps, "exposed_s_per_step": t_exposed / steps,
            "reduced_in_backward": hidden / steps / grads.nbytes,
            "grad_bytes": int(grads.nbytes), "link": link}), flush=True)


def _link(grads) -> dict:
    """Latency (8 bytes) and bandwidth (the gradient buffer) of one allreduce here."""
    import numpy as np

    from minidl import distributed
    small = [np.zeros(1)]
    big = [grads.copy()]

    def clock(arrays, repeat):
        distributed.barrier()
        t0 = time.perf_counter()
        for _ in range(repeat):
            distributed.allreduce_sum_(arrays)
        return (time.perf_counter() - t0) / repeat

    clock(small, 20), clock(big, 3)
    t_small, t_big = clock(small, 500), clock(big, 30)
    n = distributed.world_size()
    latency = t_small / (2 * (n - 1))
    bandwidth = 2 * (n - 1) / n * grads.nbytes / max(t_big - 2 * (n - 1) * latency, 1e-9)
    return {"allreduce_8B_s": t_small, "allreduce_grads_s": t_big, "latency_s": latency,
            "bandwidth_Bps": bandwidth}


# --------------------------------------------------------------------------- the driver

def _run(cmd, threads, extra_env=None):
    env = dict(os.environ, MINIDL_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS=str(threads),
               OMP_NUM_THREADS=str(threads), MINIDL_BACKEND="numpy",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
               **(extra_env or {}))
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stdout}\n{out.stderr}")
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def _median_run(tries):
    """The run with the median step time (the lower middle one for an even count)."""
    ordered = sorted(tries, key=lambda r: r["s_per_step"])
    return ordered[(len(ordered) - 1) // 2]


def _paired_ratio(runs, reference):
    """Each round's step time over the reference's in the same round; the median."""
    ratios = sorted(r["s_per_step"] / b["s_per_step"] for r, b in zip(runs, reference))
    return ratios[(len(ratios) - 1) // 2]


def main(argv=None) -> int:
    from benchmarks._common import print_table, save_json
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--repeat", type=int, default=3,
                   help="rounds; each runs every configuration once, alternating, and the "
                        "median is kept (a shared machine's other load comes and goes)")
    p.add_argument("--async-progress", action="store_true",
                   help="also run the overlapped configuration with MPICH_ASYNC_PROGRESS=1")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--overlap", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--bucket-kb", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--progress", default="auto", help=argparse.SUPPRESS)
    p.add_argument("--poll-ms", type=float, default=2.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.steps, args.overlap, args.bucket_kb, args.progress, args.poll_ms)
        return 0
    me = [sys.executable, str(pathlib.Path(__file__).resolve()), "--worker",
          "--steps", str(args.steps)]
    mpiexec = shutil.which("mpiexec")
    # (label, command, threads per process, environment)
    configs = [("1 proc x 2 thr", me, 2, None)]
    if mpiexec is None:
        print("[2 processes: skipped -- no mpiexec; pip install 'minidl[mpi]']")
    else:
        two = [mpiexec, "-n", "2"] + me
        configs += [("2 proc x 1 thr, blocking", two, 1, None),
                    ("2 x 1, overlap, DDP buckets", two + ["--overlap"], 1, None),
                    ("2 x 1, overlap, 1 MiB buckets", two + ["--overlap", "--bucket-kb",
                                                             "1024"], 1, None),
                    ("2 x 1, overlap 1 MiB, polled by hooks",
                     two + ["--overlap", "--bucket-kb", "1024", "--progress", "hooks"], 1, None)]
        if args.async_progress:
            configs.append(("2 x 1, overlap 1 MiB, async progress",
                            two + ["--overlap", "--bucket-kb", "1024"], 1,
                            {"MPICH_ASYNC_PROGRESS": "1"}))
    tries = [[] for _ in configs]
    for _ in range(args.repeat):
        for k, (_, cmd, threads, extra) in enumerate(configs):
            tries[k].append(_run(cmd, threads, extra))
    runs = [_median_run(t) for t in tries]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    rows = []
    for k, ((label, *_), r) in enumerate(zip(configs, runs)):
        step = r["s_per_step"]
        blocking = k == 1
        paired = "-" if k == 0 else f"{_paired_ratio(tries[k], tries[1]):.3f}"
        rows.append([label, step * 1e3, GLOBAL_BATCH / step, 60000 / GLOBAL_BATCH * step,
                     f"{r['wait_s_per_step'] * 1e3:.1f}" if blocking else "-",
                     f"{r['allreduce_s_per_step'] * 1e3:.1f}" if blocking else "-",
                     f"{r['exposed_s_per_step'] * 1e3:.1f}" if k else "-",
                     f"{100 * r['exposed_s_per_step'] / step:.1f}%" if k else "-",
                     f"{r['reduced_in_backward']:.0%}" if r["overlap"] else "-", paired])
    print_table(f"MNIST CNN, global batch {GLOBAL_BATCH}, {args.steps} steps (numpy), median "
                f"of {args.repeat} alternating rounds",
                ["config", "ms/step", "img/s", "epoch s", "wait ms", "allreduce ms",
                 "exposed ms", "exposed share", "done in bwd", "step vs blocking"], rows)
    print("(exposed: the step's time outside compute -- blocking: the wait for the slower "
          "rank plus the allreduce; overlapped: Reducer.finish(). done in bwd: the share of "
          "gradient bytes whose allreduce had completed when backward returned)")
    print(f"(load average {load:.1f} on {os.cpu_count()} CPUs when it ended)")
    payload = {"steps": args.steps, "global_batch": GLOBAL_BATCH,
               "configs": [c[0] for c in configs], "runs": runs, "all_tries": tries,
               "load_average": load}
    model_rows, predictions = [], []
    grad_bytes = runs[0]["grad_bytes"]
    links = list(LINKS)
    if len(runs) > 1:
        link = runs[1]["link"]
        measured_ar = runs[1]["allreduce_s_per_step"]
        predicted_ar = ring_allreduce_seconds(2, grad_bytes, link["bandwidth_Bps"],
                                              link["latency_s"])
        compute = runs[1]["s_per_step"] - measured_ar - runs[1]["wait_s_per_step"]
        print_table("the link between 2 ranks here (shared memory), and the model's check",
                    ["quantity", "value"],
                    [["allreduce latency (8 B)", f"{link['allreduce_8B_s'] * 1e6:.1f} us"],
                     ["allreduce of the gradients", f"{link['allreduce_grads_s'] * 1e3:.2f} ms"],
                     ["fitted latency / bandwidth", f"{link['latency_s'] * 1e6:.1f} us / "
                      f"{link['bandwidth_Bps'] / 1e9:.2f} GB/s"],
                     ["model: allreduce per step", f"{predicted_ar * 1e3:.2f} ms"],
                     ["measured in the step", f"{measured_ar * 1e3:.2f} ms"],
                     ["model: efficiency at 2", f"{compute / (compute + predicted_ar):.1%}"],
                     ["measured: t_c / t_step", f"{compute / runs[1]['s_per_step']:.1%}"],
                     ["speed-up, 2x1 over 1x2",
                      f"{runs[0]['s_per_step'] / runs[1]['s_per_step']:.2f}"]])
        payload["check"] = {"predicted_allreduce_s": predicted_ar,
                            "measured_allreduce_s": measured_ar, "compute_s": compute}
        for r, (label, *_) in zip(runs[2:], configs[2:]):
            # ideal overlap leaves exposed only the last bucket (it starts when backward
            # ends); the rest is the wait for the slower rank, as in the blocking run
            last = ring_allreduce_seconds(2, r["bucket_sizes"][-1], link["bandwidth_Bps"],
                                          link["latency_s"])
            print(f"{label}: model exposed {last * 1e3:.2f} ms (last bucket, "
                  f"{r['bucket_sizes'][-1]} B) + the wait for the slower rank "
                  f"({runs[1]['wait_s_per_step'] * 1e3:.1f} ms in the blocking run) = "
                  f"{(last + runs[1]['wait_s_per_step']) * 1e3:.1f} ms; measured "
                  f"{r['exposed_s_per_step'] * 1e3:.1f} ms, "
                  f"{r['reduced_in_backward']:.0%} of the bytes reduced during backward")
            payload["check"][label] = {
                "predicted_exposed_s": last + runs[1]["wait_s_per_step"],
                "measured_exposed_s": r["exposed_s_per_step"],
                "reduced_in_backward": r["reduced_in_backward"]}
        links.append(("measured here", link["bandwidth_Bps"], link["latency_s"]))
    # compute per step at a fixed per-rank batch: the CNN at 64 images as measured here on one
    # core, and on one GPU (assumed 2 ms); ResNet-50 at 64 images on a V100-class GPU in
    # float32 (about 380 images/s: 0.17 s)
    cnn_compute = payload["check"]["compute_s"] if len(runs) > 1 else runs[0]["s_per_step"] / 2
    models = [("MNIST CNN, CPU core", cnn_compute, grad_bytes),
              ("MNIST CNN, GPU", 2e-3, grad_bytes),
              ("ResNet-50, GPU", 64 / 380, RESNET50_PARAMS * 4)]
    for name, tc, nbytes in models:
        for lname, bw, lat in links:
            effs = [efficiency(tc, n, nbytes, bw, lat) for n in RANKS]
            ideal = [efficiency(tc, n, nbytes, bw, lat, overlap=True) for n in RANKS]
            model_rows.append([name, lname] + [f"{e:.0%} / {o:.0%}" for e, o in zip(effs, ideal)])
            predictions.append({"model": name, "t_compute_s": tc, "grad_bytes": nbytes,
                                "link": lname, "bandwidth_Bps": bw, "latency_s": lat,
                                "efficiency": dict(zip(RANKS, effs)),
                                "efficiency_ideal_overlap": dict(zip(RANKS, ideal))})
    print_table("cost model: predicted efficiency without / with ideal overlap, per-rank batch "
                "fixed", ["model", "link"] + [f"N={n}" for n in RANKS], model_rows)
    payload["cost_model"] = predictions
    save_json("bench_distributed", payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
