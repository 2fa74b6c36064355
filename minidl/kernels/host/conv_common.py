"""What conv2d's host kernels share: the process-wide workspace, the plan of a column-matrix
(im2col) convolution, and the predicates that say which kernel applies.

    x (N, C, H, W), W (OC, C/groups, KH, KW)  ->  y (N, OC, OH, OW)

The column matrix of a chunk of n images is (C*KH*KW, n*OH*OW'), OW' = Wp for "wide" rows
(stride 1: each (c, kh, kw, n) window is one contiguous run of the padded input, at the cost of
Wp - OW discarded columns) and OW otherwise ("exact" windows).  See docs/design/conv.md for the
measurements behind each threshold in :mod:`minidl.kernels.tuning`.
"""
from __future__ import annotations

from dataclasses import dataclass

from minidl.kernels import tuning
from minidl.kernels.geometry import ConvGeometry
from minidl.parallel import even_chunk_size
from minidl.workspace import Workspace

__all__ = ["WORKSPACE", "ColumnPlan", "plan_columns", "runs_fit", "tile_waste",
           "per_image_verdict", "winograd_verdict", "stacked_verdict", "copy_add"]

WORKSPACE = Workspace()  # process-wide: padded inputs, column matrices, chunk temporaries


@dataclass(frozen=True)
class ColumnPlan:
    """How a column-matrix conv2d lays out one call.

    ``wide``: stride-1 windows over the whole padded width (``ow_cols`` = Wp), else exact
    (``ow_cols`` = OW).  ``images_per_chunk``: the batch goes through in chunks of this many
    images (the whole batch off the host).  ``per_image``: one product per image, columns
    (n, C*KH*KW, OH*OW).  ``runs``: the columns come from x's stride phases (phase runs)."""
    g: ConvGeometry
    wide: bool
    ow_cols: int
    images_per_chunk: int
    per_image: bool = False
    runs: bool = False

    @property
    def phased(self) -> bool:
        """Strided exact windows with batch products: col2im adds into x's stride phases."""
        return not self.wide and not self.per_image and self.g.stride != (1, 1)

    @property
    def col_size(self) -> int:
        """Elements of one image's column matrix, C*KH*KW * OH*OW'."""
        g = self.g
        return g.C * g.KH * g.KW * g.OH * self.ow_cols

    def chunks(self) -> list[tuple[int, int]]:
        """(n0, n1) of every chunk of images."""
        N, nb = self.g.N, self.images_per_chunk
        return [(n0, min(N, n0 + nb)) for n0 in range(0, N, nb)]


def plan_columns(g: ConvGeometry, per_image: bool = False, runs: bool = False) -> ColumnPlan:
    """The plan of a column-matrix conv2d: wide rows for stride 1 when they add at most
    CONV_WIDE_MAX_WASTE of columns (never per image); on the host, chunks of about the tuned
    bytes of column matrix (whole chunks per thread, evenly, except per image, whose chunks
    run one after the other); off the host, the whole batch at once."""
    wide = (g.stride == (1, 1) and (g.Wp - g.OW) <= tuning.CONV_WIDE_MAX_WASTE * g.OW
            and not per_image)
    ow_cols = g.Wp if wide else g.OW
    per_image_bytes = g.C * g.KH * g.KW * g.OH * ow_cols * g.itemsize
    limit = (tuning.CONV_PER_IMAGE_CHUNK_BYTES if per_image
             else tuning.CONV_RUNS_CHUNK_BYTES if runs else tuning.CONV_CHUNK_BYTES)
    nb = g.N if g.backend != "numpy" else max(1, min(g.N, limit // per_image_bytes))
    if nb < g.N and not per_image:
        nb = even_chunk_size(g.N, nb)
    return ColumnPlan(g, wide, ow_cols, nb, per_image, runs)


def runs_fit(hw, out_hw, stride) -> bool:
    """Whether a strided convolution of an input ``hw`` (H, W) to ``out_hw`` (OH, OW) can take
    phase runs: each side of the input divisible by its stride and the output exactly input /
    stride (the usual "same" padding of an odd kernel, or a 1x1 kernel), so that a phase of
    x and the columns of one tap have the same shape."""
    (H, Wd), (OH, OW), (sh, sw) = hw, out_hw, stride
    return ((sh > 1 or sw > 1) and H % sh == 0 and Wd % sw == 0 and OH * sh == H
            and OW * sw == Wd)


def tile_waste(OH, OW) -> float:
    """Fraction of Winograd F(2x2, 3x3)'s tile outputs outside the (OH, OW) output (odd
    sizes)."""
    th, tw = (OH + 1) // 2, (OW + 1) // 2
    return 4 * th * tw / (OH * OW) - 1


def per_image_verdict(g: ConvGeometry):
    """One product per image: ungrouped, at most CONV_PER_IMAGE_MAX_MACS per image (products
    this small are memory-bound; per image they need no layout copy)."""
    if g.groups != 1:
        return False, f"groups={g.groups}"
    macs, limit = g.macs_per_image, tuning.CONV_PER_IMAGE_MAX_MACS
    if macs > limit:
        return False, f"{macs} multiply-adds per image > {limit}"
    return True, f"{macs} multiply-adds per image <= {limit}"


def _winograd_common(g: ConvGeometry, depth_factor: float, what: str):
    if g.groups != 1 or g.dilation != (1, 1):
        return False, f"groups={g.groups}, dilation={g.dilation}"
    waste = tile_waste(g.OH, g.OW)
    if waste > tuning.WINOGRAD_MAX_WASTE:
        return False, f"tiles overhang the {g.OH}x{g.OW} output by {waste:.0%}"
    need = tuning.winograd_min_depth() * depth_factor
    depth = g.C * g.OC / (g.C + g.OC)
    if not depth >= need:
        return False, f"{what}, depth C*OC/(C+OC)={depth:.1f} < {need:g}"
    return True, f"{what}, depth C*OC/(C+OC)={depth:.1f} >= {need:g}"


def winograd_verdict(g: ConvGeometry):
    """Winograd F(2x2, 3x3): a 3x3 stride-1 ungrouped, undilated conv, deep enough
    (WINOGRAD_MIN_DEPTH) and with tiles overhanging the output little (WINOGRAD_MAX_WASTE)."""
    if (g.KH, g.KW) != (3, 3) or g.stride != (1, 1):
        return False, f"{g.KH}x{g.KW} stride {g.stride}, not 3x3 stride 1"
    return _winograd_common(g, 1.0, "3x3 stride 1")


def stacked_verdict(g: ConvGeometry):
    """Stacked Winograd: a square kernel and stride listed in STACKED_WINOGRAD, deep enough
    (its multiple of the 3x3 minimum depth)."""
    key = (g.KH, g.stride[0])
    if g.KH != g.KW or g.stride[0] != g.stride[1] or key not in tuning.STACKED_WINOGRAD:
        return False, f"{g.KH}x{g.KW} stride {g.stride} not in STACKED_WINOGRAD"
    if (g.KH, g.stride[0]) == (3, 1):
        return False, "3x3 stride 1 takes plain Winograd"
    return _winograd_common(g, tuning.STACKED_WINOGRAD[key], f"{g.KH}x{g.KW} stride "
                                                              f"{g.stride[0]}")


def copy_add(xp, dst, src, bias=None):
    """``dst[...] = src (+ bias)``."""
    if bias is None:
        xp.copyto(dst, src)
    else:
        xp.add(src, bias, out=dst)
