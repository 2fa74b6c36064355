"""What has a CNN learned?  Its first-layer filters, its feature maps, and the pixels its
decision depends on, as PNG pictures.

1. **Filters** (``filters.png``): the first convolution's weights, one small picture per
   filter; grey is 0, white the filter's most positive weight, black its most negative one.
   A filter responds most where the image looks like it: a light stripe beside a dark one is
   an edge detector of that orientation; one bright blob a spot detector.
2. **Feature maps** (``maps_<block>.png``): what each filter of a block computes on one image
   -- early blocks keep the image's layout (strokes, edges light up), later ones are coarser
   and more abstract (after each 2x2 pool the maps have half the resolution).
3. **Saliency** (``saliency.png``, Simonyan et al. 2014): the gradient of the class score
   with respect to the input pixels, ``max over channels |d y_c / d x|``: the pixels where a
   small change would move the score most.  **Grad-CAM** (Selvaraju et al. 2017) weighs the
   last block's maps by how much the score depends on each: where the evidence for the class
   lies, at that block's resolution.

    python examples/mnist_cnn.py                       # trains runs/mnist_cnn/best.npz
    python examples/visualize_cnn.py --index 7         # test image 7 of MNIST
    python examples/visualize_cnn.py --arch resnet18 --weights resnet18.npz --image cat.jpg

Without a saved MNIST model a small one is trained first (``--limit`` images, one epoch, a
few seconds), and the program says so: its filters are noisier than a fully trained net's.
"""
from __future__ import annotations

import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import minidl  # noqa: E402
from minidl import layers as L  # noqa: E402
from minidl import visualize as V  # noqa: E402

from _cli import (Parser, add_backend, add_data_dir, nonnegative_int,  # noqa: E402
                  positive_int, run)

DEFAULT_MODEL = "runs/mnist_cnn/best.npz"
RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")


def mnist_model(args):
    """(model in eval mode, its conv-block names, Grad-CAM layer, image (1, 28, 28), label,
    class names): the saved CNN of examples/mnist_cnn.py, or a small one trained now."""
    from minidl.data import load_mnist
    from mnist_cnn import build_cnn
    from mnist_cnn import main as train_main
    path = pathlib.Path(args.model or DEFAULT_MODEL)
    if args.model is not None and not path.is_file():
        raise FileNotFoundError(f"--model {str(path)!r}: no such file")
    if not path.is_file():
        print(f"no model at {str(path)!r}: training a small one on {args.limit} images for "
              "one epoch (`python examples/mnist_cnn.py` trains the real one)")
        out = pathlib.Path(args.out) / "tiny_cnn"
        argv = ["--epochs", "1", "--limit", str(args.limit), "--target-acc", "0", "--quiet",
                "--batch-size", "50", "--out", str(out), "--backend", args.backend]
        if args.data_dir:
            argv += ["--data-dir", args.data_dir]
        train_main(argv)
        path = out / "best.npz"
    try:
        model = build_cnn().load(path).eval()
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{str(path)!r} is not a checkpoint of the CNN that "
                         f"examples/mnist_cnn.py trains ({exc})") from exc
    x_test, y_test = load_mnist("test", data_dir=args.data_dir)
    if args.index >= len(x_test):
        raise ValueError(f"--index must be below {len(x_test)} (MNIST test images), "
                         f"got {args.index}")
    image = (x_test[args.index].astype(np.float32) / 255)[None]
    # a conv block ends at its ReLU (full resolution, before the pool)
    blocks = [name for name, m in model.named_modules() if isinstance(m, L.ReLU)][:2]
    return model, blocks, blocks[-1], image, int(y_test[args.index]), [str(d) for d in range(10)]


def resnet_model(args):
    """The same for an ImageNet ResNet with converted torchvision weights and a photo."""
    from minidl.convert import load_weights
    from minidl.data.imagenet import imagenet_classes, preprocess
    from minidl.models import get_model
    if not args.image:
        raise ValueError("--weights needs --image (a photo to look at)")
    model = load_weights(get_model(args.arch), args.weights).eval()
    image = preprocess(args.image)
    return (model, ["relu", "layer1", "layer2", "layer3", "layer4"], "layer4", image, None,
            imagenet_classes())


def display(image):
    """The network's input as a picture in [0, 1] (H, W) or (H, W, 3): undo ImageNet's
    normalisation for RGB inputs."""
    if image.shape[0] == 1:
        return image[0]
    from minidl.data.imagenet import IMAGENET_MEAN, IMAGENET_STD
    rgb = image.transpose(1, 2, 0) * np.asarray(IMAGENET_STD) + np.asarray(IMAGENET_MEAN)
    return np.clip(rgb, 0, 1)


def main(argv=None) -> int:
    p = Parser(description="Pictures of what a CNN learned: filters, feature maps, saliency")
    p.add_argument("--model", default=None,
                   help=f"the MNIST CNN saved by examples/mnist_cnn.py (default: {DEFAULT_MODEL}, "
                        "or a small one trained now when that does not exist)")
    p.add_argument("--index", type=nonnegative_int, default=0,
                   help="which MNIST test image to look at")
    p.add_argument("--arch", choices=RESNETS, default="resnet18",
                   help="the ResNet that --weights holds")
    p.add_argument("--weights", default=None,
                   help="converted torchvision ResNet weights (.npz/.safetensors from "
                        "`python -m minidl.convert`): look at an ImageNet ResNet instead")
    p.add_argument("--image", default=None, help="the photo to look at (with --weights)")
    p.add_argument("--class-index", type=nonnegative_int, default=None,
                   help="the class whose saliency is drawn (default: the predicted one)")
    p.add_argument("--limit", type=positive_int, default=2000,
                   help="training images for the small CNN trained when --model is missing")
    p.add_argument("--out", default="runs/visualize_cnn", help="folder for the PNG files")
    add_data_dir(p)
    add_backend(p)
    args = p.parse_args(argv)
    minidl.use_backend(args.backend)
    minidl.seed(0)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    load = resnet_model if args.weights else mnist_model
    model, blocks, cam_layer, image, label, names = load(args)
    x = minidl.backend.get_backend().asarray(image)
    zoom = 8 if image.shape[-1] <= 32 else 1

    first = next(m for m in model.modules() if isinstance(m, L.Conv2d))
    W = first.W.data
    V.save_png(V.filter_grid(W, zoom=max(2, 48 // W.shape[-1])), out / "filters.png")
    print(f"filters.png: the {W.shape[0]} first-layer filters {tuple(W.shape[1:])} "
          "(grey = 0, white = most positive weight, black = most negative, per filter): "
          "light beside dark = an edge detector of that orientation")

    with V.capture(model, blocks) as seen:
        logits = V.predict(model, x)
    for name in blocks:
        maps = seen[name].data[0]
        V.save_png(V.feature_map_grid(maps, max_maps=64), out / f"maps_{name}.png",
                   scale=max(1, 112 // maps.shape[-1]))
        shown = f"the {maps.shape[0]}" if maps.shape[0] <= 64 else f"64 of the {maps.shape[0]}"
        print(f"maps_{name}.png: {shown} maps {tuple(maps.shape[1:])} of block {name!r} for "
              "this image (each scaled to its own min..max; white = strong)")

    pred = int(np.argmax(logits))
    c = pred if args.class_index is None else args.class_index
    if c >= len(logits):
        raise ValueError(f"--class-index must be below {len(logits)}, got {c}")
    truth = "" if label is None else f", true class {names[label]}"
    print(f"prediction: {names[pred]} (class {pred}){truth}; saliency for class "
          f"{names[c]} ({c})")
    sal = minidl.to_host(V.saliency(model, x, c))
    cam = V.grad_cam(model, x, c, cam_layer)
    shown = display(minidl.to_host(image))
    grey = np.rint(255 * sal / max(float(sal.max()), 1e-12)).astype(np.uint8)
    plain = np.rint(255 * (shown if shown.ndim == 3 else np.stack([shown] * 3, axis=2)))
    panels = [plain.astype(np.uint8), np.repeat(grey[..., None], 3, 2),
              V.heat_overlay(shown, sal), V.heat_overlay(shown, cam)]
    V.save_png(V.tile(np.stack(panels), cols=4, border=2), out / "saliency.png", scale=zoom)
    print("saliency.png: the input | |d score / d pixel| (white = most sensitive) | the same "
          f"over the input | Grad-CAM of block {cam_layer!r} (where the evidence lies)")
    print(f"wrote {len(blocks) + 2} PNG files to {out}/")
    return 0


if __name__ == "__main__":
    run(main)
