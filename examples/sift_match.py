"""Find an object in a cluttered scene with SIFT matches and a RANSAC homography.

1. SIFT keypoints and 128-D descriptors in both images.
2. Each descriptor of the object is matched to its nearest neighbour in the scene; Lowe's ratio
   test keeps a match only when it is clearly better than the second nearest (d1 < 0.75 d2).
3. RANSAC fits a homography (the plane-to-plane mapping of the box's front) to random sets of
   4 matches and keeps the one most matches agree with (inliers), refitted on them.
4. The picture shows inliers in green, outliers in red, and the object's outline projected.

    python examples/sift_match.py $MINIDL_DATA/images/box.png \\
        $MINIDL_DATA/images/box_in_scene.png -o matches.jpg

Exit status 1 when fewer than ``--min-inliers`` matches agree with the homography.
"""
from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import minidl  # noqa: E402
from minifeat import SIFT, load_image  # noqa: E402
from minifeat.draw import draw_matches, draw_outline  # noqa: E402
from minifeat.matching import match_descriptors, ransac_homography  # noqa: E402

from _cli import Parser, add_backend, fraction, nonnegative_int, positive_float, run  # noqa: E402


def main(argv=None) -> int:
    p = Parser(description=__doc__.split("\n")[0])
    p.add_argument("object", help="image of the object (e.g. box.png)")
    p.add_argument("scene", help="image of the scene (e.g. box_in_scene.png)")
    p.add_argument("-o", "--out", default="matches.jpg",
                   help="picture of the matches and the object's outline to write")
    add_backend(p)
    p.add_argument("--ratio", type=fraction, default=0.75, help="Lowe's ratio test")
    p.add_argument("--threshold", type=positive_float, default=3.0,
                   help="RANSAC inlier distance (px)")
    p.add_argument("--seed", type=int, default=0, help="seed of RANSAC's random samples")
    p.add_argument("--min-inliers", type=nonnegative_int, default=10,
                   help="exit with status 1 when fewer matches agree with the homography")
    args = p.parse_args(argv)
    try:
        minidl.use_backend(args.backend)
    except minidl.BackendUnavailableError as exc:
        sys.exit(f"error: {exc}")

    obj, scene = load_image(args.object), load_image(args.scene)
    sift = SIFT()
    k1, d1 = sift.detect_and_compute(obj)
    k2, d2 = sift.detect_and_compute(scene)
    print(f"keypoints: object {len(k1)}, scene {len(k2)}")

    matches, _ = match_descriptors(d1, d2, ratio=args.ratio)
    print(f"matches passing the ratio test ({args.ratio}): {len(matches)}")
    H, inliers = ransac_homography(k1.xy[matches[:, 0]], k2.xy[matches[:, 1]],
                                   threshold=args.threshold, seed=args.seed)
    n_in = int(inliers.sum())
    print(f"inliers: {n_in}")

    pic = draw_matches(obj, k1, scene, k2, matches, inliers=inliers)
    if H is not None:
        print("homography (object -> scene):\n" + str(minidl.to_host(H).round(4)))
        pic = draw_outline(pic, H, obj.shape, offset=(obj.shape[1], 0))
    pic.save(args.out)
    print(f"wrote {args.out}")
    return 0 if H is not None and n_in >= args.min_inliers else 1


if __name__ == "__main__":
    run(main)
