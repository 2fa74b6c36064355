"""Per-layer forward+backward throughput: minidl on NumPy (and CuPy) next to PyTorch CPU.

Each layer runs forward, then backward of ``sum(y * g)`` for a fixed random ``g`` (so every
gradient -- input and parameters -- is computed), float32, batch 128 unless stated.  GEMM-shaped
layers (dense, conv) report GFLOP/s counting 3 products (forward, d input, d weight) and the
percentage of this machine's float32 GEMM peak (benchmarks.bench_gemm, measured in the same run).
A convolution's flops are those of the direct method (im2col's products); the "numpy path"
column names the conv2d kernel minidl took (``minidl.kernels.explain``), and a layer through
Winograd's F(2x2, 3x3) does 4/9 of those multiply-adds, so its GFLOP/s is an effective rate.
The "block" rows time the MNIST CNN's conv -> batch norm -> ReLU -> 2x2 max pool blocks whole
(one op in minidl on NumPy); their GFLOP/s counts the convolution's products only.

    python -m benchmarks.bench_layers [--batch 128] [--threads 2] [--repeat 7] [--page-faults]

A layer timed alone would page-fault its fresh multi-MB outputs on every call (a training loop
does not), so the benchmark re-runs itself with glibc settings that keep freed memory
(``benchmarks._common.STEADY_MALLOC``), for minidl and PyTorch alike; ``--page-faults`` times
with glibc's defaults instead.
"""
from __future__ import annotations

import argparse
import sys

import numpy

import minidl
from minidl import layers as L
from benchmarks._common import (cupy_backend, machine, print_table, rerun_with_steady_malloc,
                                save_json, timeit, torch_or_none, use_threads)
from benchmarks.bench_gemm import gemm_gflops


def layer_cases(batch: int):
    """(name, minidl layer factory, torch layer factory, input shape, GEMM flops or None)."""
    def conv(c, oc, k, s, hw):
        p = k // 2
        o = (hw + 2 * p - k) // s + 1
        flops = 3 * 2 * batch * oc * o * o * c * k * k
        return (f"conv{k}x{k} s{s} {c}->{oc} @{hw}",
                lambda: L.Conv2d(c, oc, k, stride=s, padding=p),
                lambda nn: nn.Conv2d(c, oc, k, stride=s, padding=p),
                (batch, c, hw, hw), flops)

    def block(c, oc, hw):   # the MNIST CNN's blocks; GFLOP/s counts the conv's products only
        return (f"block conv3x3 {c}->{oc} @{hw} +BN+ReLU+pool",
                lambda: minidl.fuse(L.Sequential(L.Conv2d(c, oc, 3, padding=1, bias=False),
                                                 L.BatchNorm2d(oc), L.ReLU(), L.MaxPool2d(2))),
                lambda nn: nn.Sequential(nn.Conv2d(c, oc, 3, padding=1, bias=False),
                                         nn.BatchNorm2d(oc), nn.ReLU(), nn.MaxPool2d(2)),
                (batch, c, hw, hw), 3 * 2 * batch * oc * hw * hw * c * 9)
    return [
        ("dense 784->512", lambda: L.Linear(784, 512), lambda nn: nn.Linear(784, 512),
         (batch, 784), 3 * 2 * batch * 784 * 512),
        ("dense 3136->128", lambda: L.Linear(3136, 128), lambda nn: nn.Linear(3136, 128),
         (batch, 3136), 3 * 2 * batch * 3136 * 128),
        conv(1, 32, 3, 1, 28),
        conv(32, 64, 3, 1, 14),
        conv(32, 64, 3, 2, 28),
        conv(32, 64, 5, 1, 14),
        conv(32, 64, 5, 2, 28),
        ("maxpool 2x2 s2 32@28", lambda: L.MaxPool2d(2), lambda nn: nn.MaxPool2d(2),
         (batch, 32, 28, 28), None),
        ("maxpool 3x3 s2 32@28", lambda: L.MaxPool2d(3, stride=2, padding=1),
         lambda nn: nn.MaxPool2d(3, stride=2, padding=1), (batch, 32, 28, 28), None),
        ("avgpool 2x2 s2 32@28", lambda: L.AvgPool2d(2), lambda nn: nn.AvgPool2d(2),
         (batch, 32, 28, 28), None),
        ("batchnorm2d 32@28", lambda: L.BatchNorm2d(32), lambda nn: nn.BatchNorm2d(32),
         (batch, 32, 28, 28), None),
        block(1, 32, 28),
        block(32, 64, 14),
    ]


def time_minidl(make, shape, backend, repeat):
    with minidl.use_backend(backend) as b:
        layer = make()
        rng = numpy.random.default_rng(0)
        x = minidl.tensor(minidl.to_device(rng.standard_normal(shape, dtype=numpy.float32)),
                          requires_grad=True)
        g = None

        def step():
            nonlocal g
            layer.zero_grad()
            x.grad = None
            y = layer(x)
            if g is None:
                g = minidl.to_device(rng.standard_normal(y.shape, dtype=numpy.float32))
            y.backward(minidl.tensor(g))
        return timeit(step, repeat=repeat, warmup=2, sync=b.synchronize)


def conv_path(make, shape) -> str:
    """Which conv2d kernel a conv layer takes on NumPy (``minidl.kernels.explain``), and whether
    a conv -> batch norm -> ReLU -> pool block runs as one op ("-" for other layers)."""
    layer = make()
    x = minidl.tensor(numpy.zeros(shape, numpy.float32), requires_grad=True)
    if isinstance(layer, L.Sequential):
        return {"ConvBatchNormMaxPool": "one op, winograd",
                "ImageConvBatchNormMaxPool": "one op, im2col per image"}.get(
            type(layer(x).creator).__name__, "separate ops")
    if not isinstance(layer, L.Conv2d):
        return "-"
    choice = minidl.kernels.explain("conv2d", shape, layer.W.shape, stride=layer.stride,
                                    padding=layer.padding, dilation=layer.dilation,
                                    groups=layer.groups, backend="numpy")
    return choice.kernel


def time_torch(torch, make, shape, repeat):
    layer = make(torch.nn)
    x = torch.randn(*shape, requires_grad=True)
    g = torch.randn(layer(x).shape)

    def step():
        layer.zero_grad()
        x.grad = None
        layer(x).backward(g)
    return timeit(step, repeat=repeat, warmup=2)


def run(batch=128, threads=2, repeat=7) -> dict:
    torch = torch_or_none(threads)
    use_threads(threads)  # the GEMM peak below too: the layers are judged at this count
    cp = cupy_backend()
    peak = gemm_gflops(1024, "float32", numpy)
    print(f"float32 GEMM peak (n=1024, NumPy): {peak:.0f} GFLOP/s\n")
    rows, results = [], []
    cases = layer_cases(batch)
    # all minidl layers first, then all torch layers: PyTorch's OpenMP threads keep spinning
    # for a while after each op, which would steal the cores minidl's threads are timed on
    ours_ms = {name: (time_minidl(make, shape, "numpy", repeat),
                      time_minidl(make, shape, "cupy", repeat) if cp else None)
               for name, make, _, shape, _ in cases}
    torch_ms = {name: time_torch(torch, make_torch, shape, repeat) if torch else None
                for name, _, make_torch, shape, _ in cases}
    for name, make, make_torch, shape, flops in cases:
        (ours, gpu), tt = ours_ms[name], torch_ms[name]
        gf = flops / ours / 1e9 if flops else None
        path = conv_path(make, shape)
        rows.append([name, path, ours * 1e3, gf if gf else "-",
                     f"{100 * gf / peak:.0f}%" if gf else "-",
                     gpu * 1e3 if gpu else "not available",
                     tt * 1e3 if tt else "not available",
                     f"{ours / tt:.2f}x" if tt else "n/a"])
        results.append({"layer": name, "numpy_path": path, "input_shape": shape,
                        "numpy_ms": ours * 1e3,
                        "cupy_ms": gpu * 1e3 if gpu else None,
                        "torch_ms": tt * 1e3 if tt else None, "gflops": gf,
                        "fraction_of_gemm_peak": gf / peak if gf else None,
                        "time_ratio_vs_torch": ours / tt if tt else None})
    m = machine()
    table = print_table(
        f"Layer forward+backward, float32, batch {batch}, {threads} threads (ms, median); "
        f"OpenBLAS kernels {m['openblas_kernels']}, GLIBC_TUNABLES {m['GLIBC_TUNABLES']}",
        ["layer", "numpy path", "numpy ms", "GFLOP/s", "% GEMM peak", "cupy ms", "torch ms",
         "numpy/torch"], rows)
    save_json("layers", {"gemm_peak_gflops": peak, "results": results, "table": table})
    return {"results": results, "peak": peak}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=7)
    p.add_argument("--page-faults", action="store_true",
                   help="time with glibc's default malloc (fresh memory on every call)")
    args = p.parse_args(argv)
    run(args.batch, args.threads, args.repeat)


if __name__ == "__main__":
    rerun_with_steady_malloc("benchmarks.bench_layers", sys.argv[1:])
    main()
