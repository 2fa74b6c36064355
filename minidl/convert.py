"""Import pretrained weights without pickle: torchvision checkpoints to ``.npz`` or
``.safetensors``, and loading such files into :mod:`minidl.models` by name.

    python -m minidl.convert torchvision resnet50-0676ba61.pth resnet50.npz
    python -m minidl.convert torchvision inception_v3_google-0cc3c7bd.pth iv3.safetensors
    python -m minidl.convert torchvision googlenet-1378be20.pth googlenet.npz

Name map (the only difference: torchvision's layouts are minidl's, OIHW convolutions and
(out, in) linear weights, so no array is transposed)::

    torchvision                              minidl
    <conv or linear>.weight / .bias          <conv or linear>.W / .b
    <batchnorm>.weight / .bias               <batchnorm>.gamma / .beta
    <batchnorm>.running_mean / running_var   unchanged
    <batchnorm>.num_batches_tracked          dropped (a training counter, unused in eval)

A ``.weight`` belongs to a batch norm exactly when the same module also has ``running_mean``.
Module paths (``layer1.0.downsample.1``, ``Mixed_5b.branch1x1.conv``, ``features.0``) are the
same in both libraries.  A ``.pth`` is read by :mod:`minidl.torchfile`, by hand: no PyTorch
needed, and its pickle is interpreted against an allow-list (tensors, storages, OrderedDict),
so a file that asks for any other code is refused and nothing runs.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys
from collections import OrderedDict

import numpy

from minidl import backend as B

__all__ = ["torchvision_to_minidl", "minidl_to_torchvision", "read_torch_checkpoint",
           "read_weights", "write_weights", "load_weights", "convert_file", "main"]

_BN_ONLY = ("running_mean", "running_var", "num_batches_tracked")


def _to_numpy(value, name):
    if hasattr(value, "detach") and hasattr(value, "cpu"):   # a torch.Tensor, duck-typed
        t = value.detach().cpu()
        if str(t.dtype) == "torch.bfloat16":
            t = t.float()
        return t.numpy().copy()
    if B.is_array(value) or isinstance(value, numpy.ndarray):
        return B.to_host(value)
    raise TypeError(f"convert: {name!r} must be an array or a torch tensor, got "
                    f"{type(value).__name__}")


def _split(key):
    prefix, _, leaf = key.rpartition(".")
    return prefix, leaf


def is_torchvision_naming(state) -> bool:
    """Whether ``state`` uses torch's ``weight``/``bias`` names (minidl never does)."""
    return any(_split(k)[1] in ("weight", "bias") for k in state)


def torchvision_to_minidl(state) -> "OrderedDict[str, numpy.ndarray]":
    """A torchvision ``state_dict`` (tensors or arrays) -> minidl names and host arrays."""
    bn_modules = {_split(k)[0] for k in state if _split(k)[1] == "running_mean"}
    out = OrderedDict()
    for key, value in state.items():
        prefix, leaf = _split(key)
        if leaf == "num_batches_tracked":
            continue
        if leaf in ("weight", "bias"):
            new = {"weight": "gamma", "bias": "beta"}[leaf] if prefix in bn_modules \
                else {"weight": "W", "bias": "b"}[leaf]
        elif leaf in ("running_mean", "running_var"):
            new = leaf
        else:
            raise ValueError(f"convert: unexpected torchvision key {key!r} (expected names "
                             f"ending in weight, bias, {', '.join(_BN_ONLY)})")
        out[f"{prefix}.{new}" if prefix else new] = _to_numpy(value, key)
    return out


def minidl_to_torchvision(state) -> "OrderedDict[str, numpy.ndarray]":
    """The reverse map, e.g. to export a minidl model to PyTorch.  Batch norms get a zero
    ``num_batches_tracked`` when the state has none."""
    rename = {"W": "weight", "b": "bias", "gamma": "weight", "beta": "bias"}
    out = OrderedDict()
    for key, value in state.items():
        prefix, leaf = _split(key)
        leaf = rename.get(leaf, leaf)
        out[f"{prefix}.{leaf}" if prefix else leaf] = B.to_host(value)
        if leaf == "running_var" and f"{prefix}.num_batches_tracked" not in state:
            out[f"{prefix}.num_batches_tracked"] = numpy.zeros((), dtype=numpy.int64)
    return out


def read_torch_checkpoint(path) -> "OrderedDict":
    """The state_dict of a PyTorch checkpoint as host arrays, read without PyTorch
    (:func:`minidl.torchfile.load`), unwrapped from a ``{"state_dict": ...}`` or
    ``{"model": ...}`` wrapper and a ``module.`` prefix."""
    from minidl.torchfile import load
    obj = load(path)
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict):
        raise ValueError(f"convert: {str(path)!r} holds a {type(obj).__name__}, not a "
                         "state_dict")
    if obj and all(k.startswith("module.") for k in obj):
        obj = OrderedDict((k[len("module."):], v) for k, v in obj.items())
    return obj


def read_weights(path) -> "OrderedDict[str, numpy.ndarray]":
    """Host arrays with minidl names from ``.npz``, ``.safetensors`` or ``.pth`` / ``.pt`` (no
    PyTorch needed); torchvision names are mapped on the way."""
    from minidl.safetensors import load_file
    from minidl.serialization import load_state
    path = pathlib.Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        state = load_state(path)
    elif suffix == ".safetensors":
        state = load_file(path)
    elif suffix in (".pth", ".pt"):
        state = read_torch_checkpoint(path)
    else:
        raise ValueError(f"read_weights: unknown weight file type {str(path)!r} (expected "
                         ".npz, .safetensors, .pth or .pt)")
    return torchvision_to_minidl(state) if is_torchvision_naming(state) else OrderedDict(
        (k, _to_numpy(v, k)) for k, v in state.items())


def write_weights(path, state) -> None:
    """Write ``state`` (name -> array) to ``.npz`` or ``.safetensors`` by the suffix."""
    from minidl.safetensors import save_file
    from minidl.serialization import save_state
    path = pathlib.Path(path)
    if path.suffix.lower() == ".npz":
        save_state(path, state)
    elif path.suffix.lower() == ".safetensors":
        save_file(state, path, metadata={"format": "minidl"})
    else:
        raise ValueError(f"write_weights: output must end in .npz or .safetensors, got "
                         f"{str(path)!r}")


def check_state(model, state, where="load_weights") -> None:
    """Raise ValueError unless ``state`` (minidl names) has every key of ``model`` (batch-norm
    ``num_batches_tracked`` counters may be absent), no other key, and the same shapes."""
    own = model.state_dict()
    missing = [k for k in own if k not in state and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    bad = [f"{k}: model has {tuple(own[k].shape)}, file has {tuple(numpy.shape(state[k]))}"
           for k in own if k in state and tuple(own[k].shape) != tuple(numpy.shape(state[k]))]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {', '.join(missing[:8])}"
                        + (" ..." if len(missing) > 8 else ""))
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {', '.join(unexpected[:8])}"
                        + (" ..." if len(unexpected) > 8 else ""))
    if bad:
        problems.append(f"{len(bad)} shape mismatch(es): {'; '.join(bad[:8])}")
    if problems:
        raise ValueError(f"{where} into {type(model).__name__}: " + "; ".join(problems)
                         + " (wrong architecture, num_classes or aux_logits?)")


def load_weights(model, source):
    """Load weights into ``model`` from a file (see :func:`read_weights`) or a mapping in
    either naming, checking every key and shape first; returns ``model``."""
    if isinstance(source, (str, pathlib.Path)):
        state = read_weights(source)
    else:
        state = torchvision_to_minidl(source) if is_torchvision_naming(source) else source
    check_state(model, state)
    model.load_state_dict(state, strict=False)
    return model


def _guess_model(stem: str):
    from minidl.models import MODELS
    hits = [n for n in MODELS if stem.startswith(n)
            and not stem[len(n):len(n) + 1].isdigit()]
    return max(hits, key=len) if hits else None


def convert_file(src, dst, source: str = "torchvision", model: str | None = None) -> dict:
    """Convert ``src`` (a torchvision ``.pth``, or any file :func:`read_weights` reads) to
    ``dst``; when ``model`` names a :mod:`minidl.models` architecture (or the file name starts
    with one) every key and shape is checked against it.  Returns a summary."""
    if source != "torchvision":
        raise ValueError(f"convert: unknown source {source!r} (supported: torchvision)")
    state = read_weights(src)
    name = model or _guess_model(pathlib.Path(src).stem)
    if name is not None:
        from minidl.models import get_model
        check_state(get_model(name), state, where=f"convert {str(src)!r}")
    write_weights(dst, state)
    return {"tensors": len(state), "parameters": int(sum(v.size for v in state.values())),
            "checked_against": name}


def _error_line(exc: BaseException, path) -> str:
    """One line naming what went wrong with ``path``."""
    from minidl.torchfile import TorchFileError
    if isinstance(exc, TorchFileError) and "refused global" in str(exc):
        return (f"{' '.join(str(exc).split())} -- not a plain PyTorch state_dict; a file from "
                "an untrusted source may contain code: do not load it with torch.load("
                "weights_only=False)")
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.strerror}: {str(exc.filename)!r}"
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 400 else text[:397] + "..."


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m minidl.convert", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", choices=["torchvision"], help="naming of the input file")
    p.add_argument("input", help="a .pth/.pt state_dict (read without torch), .npz or "
                   ".safetensors")
    p.add_argument("output", help="the .npz or .safetensors file to write")
    p.add_argument("--model", default=None, help="architecture to check keys and shapes "
                   "against (default: guessed from the input file name)")
    p.add_argument("--debug", action="store_true",
                   help="show the full traceback of an error (or set MINIDL_DEBUG=1)")
    p.error = lambda message: p.exit(2, f"error: {message} (see {p.prog} --help)\n")
    args = p.parse_args(argv)
    debug = args.debug or os.environ.get("MINIDL_DEBUG", "") not in ("", "0")
    try:
        info = convert_file(args.input, args.output, args.source, args.model)
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 -- one line for the user; --debug for the rest
        if debug:
            raise
        print(f"error: {_error_line(exc, args.input)}", file=sys.stderr)
        return 1
    checked = f", checked against {info['checked_against']}" if info["checked_against"] \
        else " (no architecture check: pass --model)"
    print(f"wrote {args.output}: {info['tensors']} tensors, {info['parameters']:,} values"
          + checked)
    return 0


if __name__ == "__main__":
    sys.exit(main())
