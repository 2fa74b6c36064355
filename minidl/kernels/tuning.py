"""Every tuning threshold of the kernels, in one place, each with the reason it exists.

The values were measured on a 2-core AMD EPYC with OpenBLAS's AVX2 kernels; the measurements
behind each one are in docs/design/conv.md and docs/design/pooling.md.  Kernels read these at
call time (``tuning.CONV_CHUNK_BYTES``), so :func:`override` changes them for a block:

    with tuning.override(CONV_CHUNK_BYTES=4096):   # many small chunks, e.g. in a test
        ...
"""
from __future__ import annotations

import contextlib
import functools
from typing import Iterator

from minidl import _openblas

# -- convolution (minidl.kernels.host.conv_*) ------------------------------------------------
# Column matrix per chunk of images on the host: im2col, the products and col2im stay in cache.
CONV_CHUNK_BYTES = 2 << 20
# Phase runs copy longer runs, so larger chunks pay for their fewer calls.
CONV_RUNS_CHUNK_BYTES = 4 << 20
# One product per image runs its chunks one after the other; larger chunks mean fewer calls.
CONV_PER_IMAGE_CHUNK_BYTES = 8 << 20
# Keep forward's column matrix (or Winograd's input tiles) for gW up to this size, else redo it.
CONV_KEEP_COL_BYTES = 64 << 20
# Wide rows add (Wp - OW) / OW discarded GEMM columns; beyond this fraction exact rows win.
CONV_WIDE_MAX_WASTE = 0.10
# At most this many multiply-adds per image: memory-bound, one small product per image wins.
CONV_PER_IMAGE_MAX_MACS = 1 << 18
# Winograd pays when C*OC/(C+OC) (products' work per transformed element) reaches this; None
# picks by the BLAS kernels (faster BLAS, deeper layers needed): see winograd_min_depth().
WINOGRAD_MIN_DEPTH = None
# Odd output sizes waste tile outputs; beyond this fraction of extra outputs im2col wins.
WINOGRAD_MAX_WASTE = 0.15
# (kernel, stride) -> its minimum depth as a multiple of the 3x3 one, for stacked Winograd:
# stride 1 moves four pieces' tiles through memory, so it needs deeper layers.
STACKED_WINOGRAD = {(5, 1): 2.5, (5, 2): 1.0}
# A Winograd chunk's largest product buffer: a chunk's tiles and products stay in its core's cache.
WINOGRAD_CHUNK_BYTES = 3 << 20
# ...but at least this many images, or every transform add runs over one image's channels.
WINOGRAD_MIN_CHUNK_IMAGES = 4
# The fused conv -> batch norm -> pool op makes no NCHW copies, so fewer, longer chunks pay.
FUSED_WINOGRAD_CHUNK_BYTES = 6 << 20
# The fused op's per-image path: blocks of images whose conv output is about this large, so
# NumPy's per-call cost is paid a few times per step, not per image.
FUSED_IMAGE_BLOCK_BYTES = 2 << 20

# -- pooling (minidl.kernels.host.pool_*) -----------------------------------------------------
# 2x2 halving works on rows of OW elements; below this many its per-row overhead loses.
HALVING_MIN_OW = 8
# Wide phases go in blocks of planes about this large: fewer calls, still in cache.
WIDE_PHASES_BLOCK_BYTES = 8 << 20

# -- batch norm (minidl.kernels.host.bn_*) ----------------------------------------------------
# The variance pass and the affine map go a few images at a time, so each block is in cache.
BATCH_NORM_BLOCK_BYTES = 512 << 10


def winograd_min_depth() -> float:
    """:data:`WINOGRAD_MIN_DEPTH`, or when it is None 8 under OpenBLAS's AVX-512 kernels (whose
    faster products leave the memory-bound transforms a larger share), else 6."""
    if WINOGRAD_MIN_DEPTH is not None:
        return WINOGRAD_MIN_DEPTH
    return _auto_min_depth()


_AVX512_KERNELS = ("skylakex", "cooperlake", "sapphirerapids")


@functools.lru_cache(maxsize=None)
def _auto_min_depth() -> float:
    kernels = [name.lower() for name in _openblas.kernel_names()]
    return 8 if any(k in _AVX512_KERNELS for k in kernels) else 6


_generation = 0   # counts overrides, so that cached kernel choices see changed values


def generation() -> int:
    """A number that changes whenever :func:`override` sets or restores values."""
    return _generation


_NAMES = frozenset(name for name in dict(globals())
                   if name.isupper() and not name.startswith("_"))


@contextlib.contextmanager
def override(**values) -> Iterator[None]:
    """Set tuning values for the block and restore them after (for tests and benchmarks)."""
    unknown = sorted(set(values) - _NAMES)
    if unknown:
        raise KeyError(f"override: no tuning values {unknown}; they are {sorted(_NAMES)}")
    global _generation
    module = globals()
    old = {name: module[name] for name in values}
    module.update(values)
    _generation += 1
    try:
        yield
    finally:
        module.update(old)
        _generation += 1
