"""SIFT keypoints of one image, drawn as circles with their orientation.

SIFT (Lowe 2004) finds blobs at every scale: it blurs the image more and more (a Gaussian scale
space, here starting from a 2x upsampled copy), subtracts neighbouring blur levels (difference
of Gaussians, DoG) and keeps the points that are larger or smaller than all 26 neighbours in
position and scale.  Each such point is refined to sub-pixel accuracy, weak and edge-like ones
are dropped, and the dominant gradient direction around it gives its orientation.  The circle
drawn has the keypoint's ``size`` (twice its blur scale) as diameter.

    python examples/sift_keypoints.py $MINIDL_DATA/images/butterfly.jpg -o keypoints.jpg
    python examples/sift_keypoints.py IMAGE --backend cupy      # the same code on a GPU

Exit status 1 when fewer than ``--min-keypoints`` are found.
"""
from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import minidl  # noqa: E402
from minifeat import SIFT, load_image  # noqa: E402
from minifeat.draw import draw_keypoints  # noqa: E402

from _cli import Parser, add_backend, nonnegative_int, run  # noqa: E402


def main(argv=None) -> int:
    p = Parser(description=__doc__.split("\n")[0])
    p.add_argument("image", help="an image file (any format Pillow reads)")
    p.add_argument("-o", "--out", default="keypoints.jpg", help="picture to write")
    add_backend(p)
    p.add_argument("--n-features", type=nonnegative_int, default=0,
                   help="keep the N strongest (0: all)")
    p.add_argument("--draw", type=nonnegative_int, default=500, help="draw at most this many")
    p.add_argument("--min-keypoints", type=nonnegative_int, default=1,
                   help="exit with status 1 when fewer keypoints are found")
    args = p.parse_args(argv)
    try:
        minidl.use_backend(args.backend)
    except minidl.BackendUnavailableError as exc:
        sys.exit(f"error: {exc}")

    image = load_image(args.image)
    print(f"{args.image}: {image.shape[1]}x{image.shape[0]} pixels, backend {args.backend}")
    sift = SIFT(n_features=args.n_features)
    keypoints, descriptors = sift.detect_and_compute(image)
    stages = ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in sift.timings.items())
    print(f"{len(keypoints)} keypoints, descriptors {tuple(descriptors.shape)} ({stages})")

    draw_keypoints(image, keypoints, max_keypoints=args.draw).save(args.out)
    print(f"wrote {args.out}")
    return 0 if len(keypoints) >= args.min_keypoints else 1


if __name__ == "__main__":
    run(main)
