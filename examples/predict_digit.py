"""Classify your own picture of a handwritten digit with a trained MNIST CNN.

MNIST digits are white on black, 20x20 pixels of ink centred by their centre of mass in a
28x28 frame.  A photo (grey paper, uneven light, noise, the digit anywhere) is prepared the same
way before it reaches the network (``_digit_prep.py``): the paper's shading is fitted and
taken away, the ink thresholded (Otsu), its largest component kept, fitted in 20x20 and
centred by mass in 28x28.

    python examples/mnist_cnn.py                    # trains and saves runs/mnist_cnn/best.npz
    python examples/predict_digit.py my_digit.png   # prints the top-3 classes
"""
from __future__ import annotations

import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import minidl  # noqa: E402
from minidl.functions import softmax  # noqa: E402

from _cli import Parser, add_backend, read_gray, run  # noqa: E402
from _digit_prep import NoDigitFound, prepare_gray  # noqa: E402
from mnist_cnn import build_cnn  # noqa: E402


def prepare_digit(path) -> np.ndarray:
    """Load an image file and return a float32 (28, 28) array prepared like MNIST (see
    ``_digit_prep.prepare_gray``).

    The file is read by ``minifeat.load_image`` (8/16-bit grey or colour, palette, CMYK, EXIF
    orientation); FileNotFoundError / ValueError when it is missing or not an image,
    SystemExit with one line when it holds no digit."""
    try:
        return prepare_gray(read_gray(path))
    except NoDigitFound as exc:
        raise SystemExit(f"error: no digit found in {str(path)!r} ({exc})") from None


def main(argv=None) -> int:
    p = Parser(description=__doc__.splitlines()[0])
    p.add_argument("image", help="PNG/JPG of one handwritten digit")
    p.add_argument("--model", default="runs/mnist_cnn/best.npz",
                   help="weights saved by examples/mnist_cnn.py")
    add_backend(p)
    args = p.parse_args(argv)
    minidl.use_backend(args.backend)
    if not pathlib.Path(args.model).is_file():
        raise SystemExit(f"error: no model at {args.model!r}; train one with "
                         "`python examples/mnist_cnn.py` or pass --model")
    try:
        model = build_cnn().load(args.model).eval()
    except (ValueError, OSError, EOFError) as exc:
        first = " ".join(str(exc).split())
        first = first if len(first) <= 160 else first[:157] + "..."
        raise ValueError(f"{args.model!r} is not a checkpoint of the CNN that "
                         f"examples/mnist_cnn.py trains ({first})") from exc
    model = minidl.fuse(model)  # each conv-BN-ReLU-pool block runs as one op (same values)
    digit = prepare_digit(args.image)
    with minidl.no_grad():
        probs = softmax(model(minidl.tensor(digit[None, None])))
    probs = minidl.to_host(probs.data)[0]
    print(f"{args.image}:")
    for k in np.argsort(probs)[::-1][:3]:
        print(f"  {k}  {probs[k]:.2%}")
    return 0


if __name__ == "__main__":
    run(main)
