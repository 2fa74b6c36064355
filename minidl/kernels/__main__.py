"""``python -m minidl.kernels``: every registered kernel, highest priority first per op.

    python -m minidl.kernels
    python -m minidl.kernels conv2d 128,32,14,14 64,32,3,3 --padding 1   # which, and why
    python -m minidl.kernels max_pool2d 128,32,28,28 --kernel-size 3 --stride 2 --padding 1
"""
from __future__ import annotations

import argparse

from minidl import kernels


def _shape(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a shape is comma-separated ints, got {text!r}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m minidl.kernels",
                                description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("op", nargs="?", choices=kernels.ops(), help="explain this op's choice")
    p.add_argument("shapes", nargs="*", type=_shape, help="the op's input shapes, e.g. x and W")
    p.add_argument("--kernel-size", type=int, default=None, help="pooling window size")
    p.add_argument("--stride", type=int, default=None, help="stride (conv2d and pooling)")
    p.add_argument("--padding", type=int, default=0, help="zero padding on each side")
    p.add_argument("--backend", default=None, help="backend name (default: the active one)")
    args = p.parse_args(argv)
    if args.op is None:
        print(f"{'op':<30} {'kernel':<18} {'prio':>4}  {'backends':<20} summary")
        for k in kernels.kernels():
            print(f"{k.op:<30} {k.name:<18} {k.priority:>4}  {', '.join(k.backends):<20} "
                  f"{k.summary}")
        return 0
    params = {"padding": args.padding, "backend": args.backend}
    if args.kernel_size is not None:
        params["kernel_size"] = args.kernel_size
    if args.stride is not None:
        params["stride"] = args.stride
    try:
        print(kernels.explain(args.op, *args.shapes, **params))
    except (TypeError, ValueError) as exc:
        p.error(str(exc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
