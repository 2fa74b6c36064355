"""Classify your own picture of a handwritten digit with a trained MNIST CNN.

MNIST digits are white on black, 20x20 pixels of ink centred by their centre of mass in a
28x28 frame.  A photo or scan is prepared the same way before it reaches the network:

1. convert to grayscale in [0, 1]; invert when the background is light (dark ink on paper);
2. crop to the bounding box of the ink;
3. scale the longer side to 20 pixels, keeping the aspect ratio;
4. paste into a 28x28 black frame so that the ink's centre of mass is at the centre.

    python examples/mnist_cnn.py                    # trains and saves runs/mnist_cnn/best.npz
    python examples/predict_digit.py my_digit.png   # prints the top-3 classes
"""
from __future__ import annotations

import pathlib
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import minidl  # noqa: E402
from minidl.functions import softmax  # noqa: E402

from _cli import Parser, add_backend, read_gray, run  # noqa: E402
from mnist_cnn import build_cnn  # noqa: E402


def prepare_digit(path) -> np.ndarray:
    """Load an image file and return a float32 (28, 28) array prepared like MNIST.

    The file is read by ``minifeat.load_image`` (8/16-bit grey or colour, EXIF orientation);
    FileNotFoundError / ValueError when it is missing or not an image."""
    gray = read_gray(path)
    if gray.mean() > 0.5:  # light background: dark ink on paper
        gray = 1.0 - gray
    ink = gray > 0.25 * gray.max() if gray.max() > 0 else gray > 0
    if not ink.any():
        raise SystemExit(f"error: no digit found in {str(path)!r} (the image is blank)")
    rows, cols = np.nonzero(ink)
    crop = gray[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    scale = 20.0 / max(crop.shape)
    h, w = max(1, round(crop.shape[0] * scale)), max(1, round(crop.shape[1] * scale))
    small = np.asarray(Image.fromarray((crop * 255).astype(np.uint8)).resize(
        (w, h), Image.Resampling.LANCZOS), dtype=np.float32) / 255
    frame = np.zeros((28, 28), np.float32)
    top, left = (28 - h) // 2, (28 - w) // 2
    frame[top:top + h, left:left + w] = small
    # shift so that the centre of mass sits at the frame's centre (14, 14)
    total = frame.sum()
    cy = (frame.sum(axis=1) * np.arange(28)).sum() / total
    cx = (frame.sum(axis=0) * np.arange(28)).sum() / total
    dy, dx = int(round(13.5 - cy)), int(round(13.5 - cx))
    return np.roll(np.roll(frame, dy, axis=0), dx, axis=1)


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
