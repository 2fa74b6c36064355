"""Classify a photo with an ImageNet network: ResNet, AlexNet or Inception-v3 on NumPy or CuPy.

The network is built here in minidl and gets its weights from a file converted once from
torchvision's (no pickle involved when reading it)::

    python -m minidl.convert torchvision resnet50-0676ba61.pth resnet50.npz   # needs torch
    python examples/classify_image.py cat.jpg --model resnet50 --weights resnet50.npz
    python examples/classify_image.py cat.jpg --model inception_v3 --weights iv3.safetensors \
        --backend cupy

The image is resized so its shorter side is 256 (342 for Inception-v3), centre-cropped to
224x224 (299x299), normalised with ImageNet's channel mean and std, and passed through the
network in eval mode; the softmax of the logits gives the five most likely of the 1000 classes.
Without ``--weights`` the network is random (useful only to check the plumbing).
"""
from __future__ import annotations

import pathlib
import pickle
import sys
import time

import numpy

import minidl
from minidl import functions as F
from minidl.convert import load_weights
from minidl.data.imagenet import PRESETS, imagenet_classes, preprocess
from minidl.models import MODELS, get_model

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from _cli import Parser, add_backend, error_line, positive_int, run  # noqa: E402

IMAGENET_MODELS = sorted(n for n in MODELS if n not in ("resnet8", "resnet20"))


def classify(model, image_array, k: int = 5):
    """[(class index, probability), ...] of the top ``k`` for one preprocessed image."""
    x = minidl.tensor(image_array[None])
    with minidl.no_grad():
        probs = minidl.to_host(F.softmax(model(x), axis=1).data)[0]
    top = numpy.argsort(probs)[::-1][:k]
    return [(int(i), float(probs[i])) for i in top]


def main(argv=None) -> int:
    p = Parser(description="Top-5 ImageNet classes of an image")
    p.add_argument("image", help="a JPEG/PNG file")
    p.add_argument("--model", choices=IMAGENET_MODELS, default="resnet50",
                   help="the architecture (its weights come from --weights)")
    p.add_argument("--weights", default=None,
                   help=".npz / .safetensors from `python -m minidl.convert` (or a .pth, "
                        "with torch installed); random weights when omitted")
    add_backend(p)
    p.add_argument("--top", type=positive_int, default=5, help="how many classes to print")
    args = p.parse_args(argv)
    try:
        minidl.use_backend(args.backend)
    except minidl.BackendUnavailableError as exc:
        sys.exit(f"error: {exc}")
    kwargs = {"transform_input": True} if args.model == "inception_v3" and args.weights else {}
    model = get_model(args.model, **kwargs)
    if args.weights:
        try:
            load_weights(model, args.weights)
        except (ValueError, OSError, ImportError, EOFError, RuntimeError,
                pickle.UnpicklingError) as exc:
            why = ("torch.load(weights_only=True) refused it: not a plain state_dict"
                   if isinstance(exc, pickle.UnpicklingError) else error_line(exc))
            sys.exit(f"error: {why} (--weights {args.weights!r}, --model {args.model})")
    else:
        print("warning: no --weights given; the network is random", file=sys.stderr)
    model = minidl.fuse(model.eval())  # conv+BN pairs folded into one convolution each
    resize, crop = PRESETS.get(args.model, PRESETS["default"])
    try:
        x = preprocess(args.image, resize, crop)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {args.image!r} as an image: {exc}") from exc
    start = time.perf_counter()
    top = classify(model, x, args.top)
    minidl.backend.synchronize()
    seconds = time.perf_counter() - start
    names = imagenet_classes()
    print(f"{args.model} on {args.backend}, {crop}x{crop}, {seconds * 1000:.0f} ms")
    for rank, (i, prob) in enumerate(top, 1):
        print(f"{rank}. {prob:7.2%}  {i:4d}  {names[i]}")
    return 0


if __name__ == "__main__":
    run(main)
