"""Run every benchmark, print the tables, write JSON and the ratio chart.

    python -m benchmarks                  # GEMM peak, layers, training throughput and
                                          # per-op profile, SIFT
    python -m benchmarks --quick          # fewer repeats/steps
    python -m benchmarks --time-to-accuracy   # also the full CNN time-to-99% race (slow)
    python -m benchmarks --page-faults    # glibc's default malloc (see bench_layers)
"""
import argparse
import importlib
import sys

from benchmarks import bench_gemm, bench_layers, bench_train, chart, profile_train
from benchmarks._common import rerun_with_steady_malloc


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--time-to-accuracy", action="store_true")
    p.add_argument("--page-faults", action="store_true",
                   help="time with glibc's default malloc (fresh memory on every call)")
    args = p.parse_args(argv)
    bench_gemm.run(threads=args.threads)
    bench_layers.run(threads=args.threads, repeat=3 if args.quick else 7)
    train_args = ["--threads", str(args.threads), "--steps", "15" if args.quick else "60"]
    bench_train.main(train_args + (["--time-to-accuracy"] if args.time_to_accuracy else []))
    profile_train.main(["--threads", str(args.threads), "--steps", "10" if args.quick else "30"])
    try:
        sift = importlib.import_module("benchmarks.bench_sift")
    except ImportError as exc:
        print(f"[sift benchmark skipped: {exc}]")
    else:
        sift.main(["--repeat", "2"] if args.quick else [])
    chart.main()


if __name__ == "__main__":
    rerun_with_steady_malloc("benchmarks", sys.argv[1:])
    main()
