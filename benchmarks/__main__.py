"""Run every benchmark, print the tables, write JSON and the ratio chart.

    python -m benchmarks                  # GEMM peak, layers, training throughput and
                                          # per-op profile, SIFT
    python -m benchmarks --quick          # fewer repeats/steps
    python -m benchmarks --time-to-accuracy   # also the full CNN time-to-99% race (slow)
    python -m benchmarks --page-faults    # glibc's default malloc (see bench_layers)
"""
import argparse
import importlib
import os
import sys

from benchmarks import bench_gemm, bench_layers, bench_train, chart, profile_train
from benchmarks._common import positive_int, rerun_with_steady_malloc


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks",
                                description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--threads", type=positive_int, default=2,
                   help="BLAS and minidl threads of every benchmark")
    p.add_argument("--quick", action="store_true",
                   help="fewer repeats and steps (a rough table in a few minutes)")
    p.add_argument("--time-to-accuracy", action="store_true",
                   help="also race the CNN to 99%% MNIST test accuracy (slow)")
    p.add_argument("--page-faults", action="store_true",
                   help="time with glibc's default malloc (fresh memory on every call)")
    p.add_argument("--debug", action="store_true",
                   help="show the traceback on Ctrl-C (or set MINIDL_DEBUG=1)")
    p.error = lambda message: p.exit(2, f"error: {message} (see {p.prog} --help)\n")
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
    try:
        main()
    except KeyboardInterrupt:
        if "--debug" in sys.argv or os.environ.get("MINIDL_DEBUG", "") not in ("", "0"):
            raise
        print("interrupted", file=sys.stderr)
        sys.exit(130)
