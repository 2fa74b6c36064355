"""Classify a photo with an ImageNet network: ResNet, AlexNet or Inception-v3 on NumPy or CuPy,
with torchvision's or Keras's pre-trained weights.

The network is built here in minidl; its weights are downloaded once (verified, cached under
``~/.cache/minidl/models``: :mod:`minidl.models.hub`) or read from ``--weights FILE``::

    python examples/classify_image.py cat.jpg --model resnet50             # torchvision's
    python examples/classify_image.py cat.jpg --model resnet50 --source keras
    python examples/classify_image.py cat.jpg --model inception_v3 --weights \
        inception_v3_weights_tf_dim_ordering_tf_kernels.h5                 # offline, Keras's
    python examples/classify_image.py cat.jpg --model resnet50 --weights resnet50.npz \
        --backend cupy

``--source`` (torchvision or keras) picks the architecture variant and the preprocessing the
weights were trained with; with ``--weights`` it defaults to what the file says (``.h5``: Keras).
The image is resized so its shorter side is 256 (342 for Inception-v3) and centre-cropped to
224x224 (299x299); then torchvision's weights get ImageNet's mean/std normalisation, Keras's
ResNet50 its "caffe" input (BGR, mean subtracted) and Keras's InceptionV3 [-1, 1]
(:func:`minidl.data.imagenet.preset`).  The network runs in eval mode; the softmax of the
logits gives the five most likely of the 1000 classes.  ``--random`` skips the weights (a
random network: only to check the plumbing).
"""
from __future__ import annotations

import pathlib
import pickle
import sys
import time

import numpy

import minidl
from minidl import functions as F
from minidl.data.checksums import ChecksumError
from minidl.data.download import DatasetNotFoundError
from minidl.data.imagenet import imagenet_classes, preprocess
from minidl.models import MODELS, hub

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
                   help="the architecture")
    p.add_argument("--weights", default=None,
                   help="a local weight file: Keras .h5, torchvision .pth, or .npz / "
                        ".safetensors from `python -m minidl.convert`; downloaded (and "
                        "cached) when omitted")
    p.add_argument("--source", choices=hub.SOURCES, default=None,
                   help="whose weights: torchvision's or Keras's (default: what --weights "
                        "says, .h5 = keras; else torchvision)")
    p.add_argument("--random", action="store_true",
                   help="no weights: a random network, to check the plumbing offline")
    add_backend(p)
    p.add_argument("--top", type=positive_int, default=5, help="how many classes to print")
    args = p.parse_args(argv)
    try:
        minidl.use_backend(args.backend)
    except minidl.BackendUnavailableError as exc:
        sys.exit(f"error: {exc}")
    if args.random and args.weights:
        p.error("--random and --weights exclude each other")
    source = args.source or (hub.source_of(args.weights) if args.weights else "torchvision")
    if source == "keras" and args.model not in ("resnet50", "inception_v3"):
        p.error(f"--source keras: Keras's weights exist for resnet50 and inception_v3, "
                f"not {args.model}")
    prep = hub.preprocessing(args.model, source)
    try:   # the image first: a typo in its name should not wait for a download
        x = preprocess(args.image, **prep)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read {args.image!r} as an image: {exc}") from exc
    model = hub.build(args.model, source)
    if args.random:
        print("warning: --random: the network has random weights", file=sys.stderr)
    else:
        weights = args.weights
        try:
            if weights is None:
                weights = hub.weights_file(args.model, source)
            hub.load(model, weights, source)
        except DatasetNotFoundError as exc:   # offline: every place tried, on several lines
            sys.exit(f"error: {exc}")
        except (ValueError, OSError, ImportError, EOFError, RuntimeError,
                pickle.UnpicklingError, ChecksumError) as exc:
            why = ("torch.load(weights_only=True) refused it: not a plain state_dict"
                   if isinstance(exc, pickle.UnpicklingError) else error_line(exc))
            sys.exit(f"error: {why} (--weights {str(weights)!r}, --model {args.model}, "
                     f"--source {source})")
    model = minidl.fuse(model.eval())  # conv+BN pairs folded into one convolution each
    crop = prep["crop"]
    start = time.perf_counter()
    top = classify(model, x, args.top)
    minidl.backend.synchronize()
    seconds = time.perf_counter() - start
    names = imagenet_classes()
    print(f"{args.model} on {args.backend}, {crop}x{crop}, {seconds * 1000:.0f} ms "
          f"({source} weights, {prep['mode']} preprocessing)")
    for rank, (i, prob) in enumerate(top, 1):
        print(f"{rank}. {prob:7.2%}  {i:4d}  {names[i]}")
    return 0


if __name__ == "__main__":
    run(main)
