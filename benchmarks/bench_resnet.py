"""ResNet-50 inference (224x224, eval mode, float32): minidl on NumPy (and CuPy when present)
next to PyTorch CPU in the same run, batch 1 and 16.

``--threads`` applies to both libraries: ``torch.set_num_threads`` and NumPy's OpenBLAS
(through its C API).  OpenBLAS's spinning threads suffer badly when the cores are shared with
other work, so on a busy machine compare ``--threads 1`` too.  Both networks carry the same
random weights (minidl's, put into the torch module through minidl.convert's name map), and
the logits are compared before timing, so the two columns compute the same function.

    python -m benchmarks.bench_resnet [--threads 2] [--repeat 5] [--batches 1 16]
"""
from __future__ import annotations

import argparse

import numpy

import minidl
from minidl.convert import minidl_to_torchvision
from minidl.models import resnet50
from benchmarks._common import (cupy_backend, print_table, save_json, timeit, torch_or_none,
                                use_threads)

FLOPS_PER_IMAGE = 2 * 4.09e9   # multiply-adds of ResNet-50 at 224x224, times 2


def torch_resnet50(torch, state):
    """torch's ResNet-50 (torchvision layout, built from torch.nn) holding ``state``."""
    import sys
    import pathlib
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests" / "minidl"
                           / "models"))
    from _torch_reference import resnet50 as make
    model = make()
    model.load_state_dict({k: torch.from_numpy(numpy.ascontiguousarray(v))
                           for k, v in minidl_to_torchvision(state).items()})
    return model.eval()


def run(threads=2, repeat=5, batches=(1, 16)):
    torch = torch_or_none(threads)
    blas = use_threads(threads)
    print(f"NumPy BLAS threads: {blas[0] if blas else 'unknown (not OpenBLAS)'}")
    cupy = cupy_backend()
    model = minidl.fuse(resnet50().eval())  # batch norm folded into the convolutions
    state = {k: minidl.to_host(v) for k, v in model.state_dict().items()}
    tmodel = torch_resnet50(torch, state) if torch is not None else None
    rng = numpy.random.default_rng(0)
    rows, results = [], []
    for n in batches:
        x = rng.standard_normal((n, 3, 224, 224), dtype=numpy.float32)
        xt = minidl.tensor(x)

        def ours():
            with minidl.no_grad():
                return model(xt).data
        t_np = timeit(ours, repeat=repeat)
        t_torch = t_cupy = None
        if tmodel is not None:
            xtt = torch.from_numpy(x)
            with torch.no_grad():
                err = float(numpy.abs(ours() - tmodel(xtt).numpy()).max())
            print(f"batch {n}: max |minidl - torch| logits = {err:.2e}")

            def theirs():
                with torch.no_grad():
                    return tmodel(xtt)
            t_torch = timeit(theirs, repeat=repeat)
        if cupy is not None:
            with minidl.use_backend("cupy"):
                gmodel = resnet50().eval()
                gmodel.load_state_dict(state)
                gmodel = minidl.fuse(gmodel)
                xg = minidl.tensor(x)

                def gpu():
                    with minidl.no_grad():
                        return gmodel(xg)
                t_cupy = timeit(gpu, repeat=repeat, sync=cupy.synchronize)
        ratio = None if t_torch is None else t_np / t_torch
        rows.append([f"batch {n}", t_np * 1e3, n / t_np, FLOPS_PER_IMAGE * n / t_np / 1e9,
                     None if t_torch is None else t_torch * 1e3,
                     None if t_torch is None else n / t_torch,
                     None if ratio is None else f"{ratio:.2f}x",
                     None if t_cupy is None else t_cupy * 1e3])
        results.append({"batch": n, "minidl_numpy_ms": t_np * 1e3, "torch_cpu_ms":
                        None if t_torch is None else t_torch * 1e3, "ratio_numpy_over_torch":
                        ratio, "minidl_cupy_ms": None if t_cupy is None else t_cupy * 1e3})
    print_table(f"ResNet-50 inference, 224x224 float32, {threads} threads (median of {repeat})",
                ["", "minidl ms", "img/s", "GFLOP/s", "torch ms", "torch img/s",
                 "minidl/torch", "cupy ms"], rows)
    save_json("bench_resnet", {"threads": threads, "repeat": repeat, "results": results})
    return results


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    args = p.parse_args(argv)
    run(args.threads, args.repeat, tuple(args.batches))


if __name__ == "__main__":
    main()
