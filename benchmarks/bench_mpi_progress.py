"""Does a nonblocking allreduce progress while the rank computes?  Between 2 ranks: start an
``Iallreduce`` of ``--kb`` KiB (the MNIST CNN's largest gradient bucket by default), compute
matrix products for ``--compute-ms``, then ``Wait``; the wait is what was *not* overlapped.
Ways to progress it: none (only ``Wait``), ``MPI_Test`` from the computing loop every
product, and a helper thread that tests every 0.2 ms (minidl's Reducer does this); a blocking
``Allreduce`` after the products is the reference.  Run it also with MPICH_ASYNC_PROGRESS=1
to see MPICH's own progress thread.

    mpiexec -n 2 python -m benchmarks.bench_mpi_progress [--kb 1568] [--compute-ms 20]

Medians of ``--repeat`` on rank 0's clock; table on stdout, JSON in
benchmarks/results/bench_mpi_progress.json (rank 0).
"""
from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    import numpy as np
    from mpi4py import MPI
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kb", type=int, default=1568)
    p.add_argument("--compute-ms", type=float, default=20.0)
    p.add_argument("--repeat", type=int, default=15)
    args = p.parse_args(argv)
    comm = MPI.COMM_WORLD
    buf = np.ones(args.kb * 1024 // 4, np.float32)
    m = np.random.default_rng(0).standard_normal((300, 300))

    def compute(request=None):
        t = time.perf_counter()
        while time.perf_counter() - t < args.compute_ms / 1e3:
            m @ m
            if request is not None:
                request.Test()

    def blocking():
        compute()
        t = time.perf_counter()
        comm.Allreduce(MPI.IN_PLACE, buf)
        return time.perf_counter() - t

    def nonblocking(how):
        request = comm.Iallreduce(MPI.IN_PLACE, buf)
        stop, thread = threading.Event(), None
        if how == "thread":
            def poll():
                while not stop.wait(2e-4) and not request.Test():
                    pass
            thread = threading.Thread(target=poll, daemon=True)
            thread.start()
        compute(request if how == "loop" else None)
        t = time.perf_counter()
        if thread is not None:
            stop.set()
            thread.join()
        request.Wait()
        return time.perf_counter() - t

    cases = [("blocking Allreduce after compute", blocking),
             ("Iallreduce, only Wait", lambda: nonblocking(None)),
             ("Iallreduce, Test in the loop", lambda: nonblocking("loop")),
             ("Iallreduce, helper thread", lambda: nonblocking("thread"))]
    results = {name: [] for name, _ in cases}
    for _ in range(args.repeat):
        for name, fn in cases:       # alternating, so that every case sees the same load
            comm.Barrier()
            results[name].append(fn())
    if comm.Get_rank() == 0:
        from benchmarks._common import print_table, save_json
        rows = [[name, statistics.median(v) * 1e3] for name, v in results.items()]
        asyncp = os.environ.get("MPICH_ASYNC_PROGRESS", "0")
        print_table(f"{args.kb} KiB float32 allreduce, 2 ranks, after {args.compute_ms:g} ms "
                    f"of compute (MPICH_ASYNC_PROGRESS={asyncp}, thread level "
                    f"{MPI.Query_thread()})", ["case", "exposed ms (median)"], rows)
        print(f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
        save_json("bench_mpi_progress" + ("_async" if asyncp == "1" else ""),
                  {"kb": args.kb, "compute_ms": args.compute_ms, "exposed_s": results,
                   "load_average": os.getloadavg()[0]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
