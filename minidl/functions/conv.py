"""2-D convolution (cross-correlation, as in PyTorch) as matrix products: im2col + GEMM.

    x (N, C, H, W) NCHW,  W (OC, C/groups, KH, KW) OIHW,  b (OC,)  ->  y (N, OC, OH, OW)
    OH = (H + 2*pad_h - dil_h*(KH - 1) - 1) // stride_h + 1   (and likewise OW)

Layout
------
The padded input lives in one contiguous buffer (:mod:`minidl.functions.im2col` does the
copies in and out of the column matrices).  A read-only strided window view of it
(``xp.lib.stride_tricks.as_strided``, never written through) is copied once into the column
matrix ``col`` of shape (C*KH*KW, N*OH*OW'), rows ordered (c, kh, kw) like W's columns, so that

    forward   y2 (OC, N*OH*OW')   = W2 (OC, C*KH*KW) @ col
    backward  gW (OC, C*KH*KW)    = gy2 (OC, N*OH*OW') @ col^T
              gcol (C*KH*KW, N*OH*OW') = W2^T @ gy2   then col2im: one slice-add per (kh, kw)

are each ONE large BLAS product per group (grouped convs batch over the groups with
``matmul``).  y2 comes out (OC, N, ...) and one copy turns it into NCHW.

"Wide" rows for stride 1: the window of output (oh, ow) at kernel offset (kh, kw) starts at flat
position (oh + kh*dil)*Wp + ow + kw*dil of a padded plane of width Wp.  Letting ow run over the
whole padded width (OW' = Wp instead of OW) makes that position oh*Wp + ow + const: one
contiguous run of OH*Wp elements per (c, kh, kw, n).  The im2col copy and the col2im adds then
move long contiguous rows instead of rows of OW elements (3-4x faster on a CPU), at the cost of
Wp/OW - 1 extra GEMM columns (about 7% for 28x28 with padding 1), whose outputs are discarded and
whose gradients are zero.  Strided convolutions, and those where the extra columns would be
more than 10% (small images, wide kernels: 14% for 14x14 with a 3x3 kernel, 29% with 5x5),
use exact (OW' = OW) windows.

Phase runs.  An exact strided window copies rows of OW elements (14 for a 3x3 stride-2 conv
at 28x28), and on a CPU NumPy's cost per row, not per element, sets the time of those copies.
When the output is exactly the input / stride (the usual padding), x is split once into its
stride phases, (C, n, OH, OW) each, and a tap's columns are its phase shifted by whole rows and
columns: one copy of n*OH*OW elements per channel, at a flat offset, after which the places the
shift carried across a row or an image (padding) are zeroed.  col2im adds back the same way.
No padded copy is made (:class:`minidl.functions.im2col.ColumnLayout`, host only).

Small convolutions on the CPU (a grayscale network's first layer: K = 9 rows) instead take one
product per image, ``y[i] = W2 @ col[i]`` and ``gW = sum_i gy[i] @ col[i]^T``, split over host
threads: their products are memory-bound, and per image they need no layout copy.

3x3 stride-1 convolutions with enough channels take Winograd's F(2x2, 3x3) on the CPU instead
(:mod:`minidl.functions.winograd`): 16 products with 4/9 of im2col's work in all, and
memory-bound transforms around them.  On a 2-core CPU with OpenBLAS's AVX2 kernels: 35% less time
for the MNIST CNN's 32->64 conv and for 64->64 at 28x28, 43% for 128->128 (training); with its
1.8x faster AVX-512 kernels 20-46%.  Only very shallow layers (C*OC/(C+OC) below 6-8, e.g.
4->32) keep im2col (``_winograd_min_depth``).  5x5 convolutions with stride 1 or 2 take the
same F(2x2, 3x3) as one 3x3 convolution over 4 pieces of the input stacked as channels
(``StackedWinograd``: the stride's phases, or x shifted by whole tiles): 16 multiplies per
output against im2col's 25, 20-27% less time for 32->64 layers (``_STACKED_WINOGRAD``).

On the CPU
----------
The batch goes through in chunks of about 2 MB of column matrix (4 MB with phase runs), so the
copies stay in cache; the chunks run side by side, whole chunks per host thread with BLAS on
one thread each (:func:`minidl.parallel.chunks_side_by_side`), so each chunk's im2col, products
and col2im stay on one core.  Scratch
buffers come from a workspace that reuses them from call to call (no fresh, page-faulting
memory every step), and when W needs a gradient the column matrix is kept from forward for dW.
"""
from __future__ import annotations

import functools
import numbers

from minidl import _openblas
from minidl import backend as B
from minidl.autograd import Function, is_grad_enabled
from minidl.functions.arguments import as_input as _as_input, conv_output_size, output_hw as _output_hw, pair as _pair
from minidl.functions.im2col import ColumnLayout, runs_fit
from minidl.functions.winograd import StackedWinograd, Winograd3x3, tile_waste
from minidl.parallel import chunks_side_by_side, even_chunk_size, parallel_for, sum_in_order
from minidl.workspace import Workspace

__all__ = ["conv2d", "conv_output_size"]

# On the host, the batch is processed in chunks whose column matrix is about this large, so
# that im2col, the GEMMs and col2im work in the last-level cache instead of streaming a
# 9x-input-sized matrix through memory (measured on a 2-core CPU: 3-4x faster than one chunk).
# The chunks run side by side, whole chunks per thread with BLAS on one thread each
# (minidl.parallel.chunks_side_by_side): with that, 2 MB chunks beat 8 MB ones by 4-12%
# (fwd+bwd, batch 128: 3x3 s2 32->64 at 28x28 23.0-24.9 -> 21.8-22.6 ms, 5x5 s2 64.4-68.3 ->
# 58.4-60.2 ms; earlier, with the threads inside each chunk's steps, 8 MB beat 1-4 MB).
# On a GPU the whole batch is one chunk.  One product per image runs its chunks one after the
# other (the threads split each chunk's images), and larger chunks of those stay faster.
_CHUNK_BYTES = 2 << 20
_PER_IMAGE_CHUNK_BYTES = 8 << 20
# When W needs a gradient, forward keeps the column matrix for backward (saving a second
# im2col, about 10% of a conv's training time) unless it is larger than this; so does the
# Winograd path with its transformed input tiles.
_KEEP_COL_BYTES = 64 << 20
# Stride-1 convolutions use wide rows (see the module docstring) when they add at most this
# fraction of columns.
_WIDE_MAX_WASTE = 0.10
# On the host, a convolution whose product for one image has at most this many multiply-adds
# (OC * C*KH*KW * OH*OW) takes one product per image, split over host threads, instead of one
# product for the batch.  Products this small are memory-bound, and OpenBLAS runs them on one
# thread (its threshold is 65536 * 4 multiply-adds), so the threads don't fight over the
# cores; the per-image products come out in NCHW and take gy in NCHW, so there is no layout
# copy either way.  MNIST CNN's 1->32 3x3 conv (226k per image) on a 2-core CPU: fwd+bwd
# 3.7 -> 1.7 ms; 1->32 5x5 (627k) goes the other way, 5.7 -> 11.4 ms.
_PER_IMAGE_MAX_MACS = 1 << 18
# Ungrouped 3x3 stride-1 convolutions on these backends take Winograd's F(2x2, 3x3)
# (minidl.functions.winograd) when C*OC/(C + OC) -- the products' multiply-adds per element the
# transforms move -- is at least the minimum depth and its tiles overhang the output by at most
# _WINOGRAD_MAX_WASTE (odd sizes).  The faster the BLAS, the deeper a layer must be for the
# (memory-bound) transforms to pay off.  Winograd / im2col time, fwd+bwd at batch 128 on a
# 2-core CPU, with OpenBLAS's AVX2 kernels: 4->32 at 28x28 (depth 3.6) 1.42, 8->16 (5.3) 0.88,
# 16->32 (11) 0.77, 32->32 (16) 0.79, 32->64 at 14x14 (21) 0.65, 64->64 at 28x28 (32) 0.65,
# 128->128 at 14x14 (64) 0.57; with its AVX-512 kernels (GEMM 1.8x faster): 8->16 0.93,
# 8->32 (6.4) 1.03, 16->32 0.75, 32->64 0.80, 64->64 0.71, 128->128 0.54.
# _WINOGRAD_MIN_DEPTH None picks by the kernels (_auto_min_depth); not measured on a GPU yet,
# so CuPy keeps im2col.
_WINOGRAD_BACKENDS = ("numpy",)
_WINOGRAD_MIN_DEPTH = None
_AVX512_KERNELS = ("skylakex", "cooperlake", "sapphirerapids")
_WINOGRAD_MAX_WASTE = 0.15
# Square kernels and strides (kernel, stride) that go through Winograd as a stack of 3x3 pieces
# (minidl.functions.winograd.StackedWinograd), with their minimum depth as a multiple of the
# 3x3 one.  Stacked Winograd / im2col time, fwd+bwd at batch 128, 2-core CPU, AVX2 kernels:
# 5x5 stride 2 at 28x28: 8->16 (depth 5.3) 0.88, 16->32 (11) 0.79, 32->64 (21) 0.73; stride 1:
# 32->64 at 14x14 0.77, at 28x28 0.95, 64->128 at 14x14 0.82, 32->32 (16) at 14x14 0.82, at 28x28
# 0.96, 16->32 (11) at 28x28 1.11, 8->16 at 28x28 1.34.  AVX-512 kernels: 0.74-0.78 for
# 32->64 5x5 stride 1 and 2, 64->128 stride 1, 8->16 and 16->32 stride 2.  Stride 1 moves 4
# pieces' tiles through memory, so it needs deeper layers.
_STACKED_WINOGRAD = {(5, 1): 2.5, (5, 2): 1.0}
# Strided convolutions on the host whose output is the input / stride take phase runs (see
# the module docstring) in chunks of _RUNS_CHUNK_BYTES of column matrix.  Fwd+bwd, 2-core CPU,
# AVX2 kernels, against exact windows in 2 MB chunks, interleaved: 3x3 stride 2 32->64 at 28x28
# (batch 128) 20.8 -> 18.2 ms, 64->128 62.9 -> 58.7 ms, 16->32 at 56x56 28.8 -> 24.3 ms, 1x1
# stride 2 64->128 at 28x28 13.6 -> 12.2 ms, 7x7 stride 2 3->64 at 112x112 (batch 16) 21.7 ->
# 20.8 ms.  Their chunks: 2 MB 18.1 ms, 3 MB 17.8, 4 MB 17.5, 6 MB 17.9, 8 MB 17.8 (3x3 32->64).
_PHASE_RUNS = True
_RUNS_CHUNK_BYTES = 4 << 20


_workspace = Workspace()  # process-wide: padded inputs, column matrices, chunk temporaries


def _winograd_min_depth() -> float:
    """``_WINOGRAD_MIN_DEPTH``, or when it is None: 8 under OpenBLAS's AVX-512 kernels, else
    6 (see the measurements above it)."""
    if _WINOGRAD_MIN_DEPTH is not None:
        return _WINOGRAD_MIN_DEPTH
    return _auto_min_depth()


@functools.lru_cache(maxsize=None)
def _auto_min_depth() -> float:
    kernels = [name.lower() for name in _openblas.kernel_names()]
    return 8 if any(k in _AVX512_KERNELS for k in kernels) else 6


def takes_per_image(backend: str, C, OC, kernel, OH, OW, groups=1) -> bool:
    """Whether conv2d takes one product per image (``_PER_IMAGE_MAX_MACS``, host only)."""
    return (backend == "numpy" and groups == 1
            and OC * C * kernel[0] * kernel[1] * OH * OW <= _PER_IMAGE_MAX_MACS)


def takes_winograd(backend: str, C, OC, kernel, OH, OW, stride=(1, 1), dilation=(1, 1),
                   groups=1, per_image=None) -> bool:
    """Whether conv2d goes through Winograd on ``backend`` for C -> OC channels, a ``kernel``
    (KH, KW) and an (OH, OW) output: 3x3 stride 1 directly, a square kernel and stride in
    _STACKED_WINOGRAD as a stack of 3x3 pieces (StackedWinograd); each when deep enough
    (C*OC/(C+OC) of its own channels, _STACKED_WINOGRAD's multiple of the 3x3 one) and its
    tiles overhang the output little enough.  ``per_image`` None: worked out as conv2d does
    (one product per image, for the smallest convolutions on the host, excludes Winograd)."""
    KH, KW = kernel
    if per_image is None:
        per_image = takes_per_image(backend, C, OC, kernel, OH, OW, groups)
    if not (backend in _WINOGRAD_BACKENDS and groups == 1 and tuple(dilation) == (1, 1)
            and not per_image and tile_waste(OH, OW) <= _WINOGRAD_MAX_WASTE):
        return False
    depth = _winograd_min_depth()
    if (KH, KW) != (3, 3) or tuple(stride) != (1, 1):
        key = (KH, stride[0])
        if KH != KW or stride[0] != stride[1] or key not in _STACKED_WINOGRAD:
            return False
        depth *= _STACKED_WINOGRAD[key]
    return C * OC >= depth * (C + OC)


class Conv2d(Function):
    """y = conv2d(x, W) + b; see the module docstring for the GEMM layout."""

    fresh_grads = True  # gx, gW and gb are made anew by each backward

    def __init__(self, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1,
                 keep_col=False, recorded=True):
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        # keep_col: W needs a gradient, keep the column matrix for backward; recorded: a
        # backward may come (else the padded input goes back to the workspace at once)
        self.keep_col, self.recorded = keep_col, recorded

    # -- geometry and the window view -------------------------------------------------------
    def _setup(self, x, W):
        N, C, H, Wd = x.shape
        OC, Cg, KH, KW = W.shape
        (sh, sw), (ph, pw) = self.stride, self.padding
        OH, OW = _output_hw("conv2d", (H, Wd), (KH, KW), self.stride, self.padding,
                            self.dilation)
        Hp, Wp = H + 2 * ph, Wd + 2 * pw
        # wide rows cost (Wp - OW) / OW extra columns in every product and copy; exact rows
        # cost shorter copies.  Measured on the CPU with threaded copies: wide wins at 3.6%
        # and 7% waste (56x56, 28x28 3x3), exact wins at 14% and 29% (14x14 3x3 and 5x5)
        self.per_image = takes_per_image(B.backend_of(x).name, C, OC, (KH, KW), OH, OW,
                                         self.groups)
        self.winograd = takes_winograd(B.backend_of(x).name, C, OC, (KH, KW), OH, OW,
                                       self.stride, self.dilation, self.groups, self.per_image)
        wide = (sh == 1 and sw == 1 and (Wp - OW) <= _WIDE_MAX_WASTE * OW
                and not self.per_image)
        ow_cols = Wp if wide else OW
        runs = (_PHASE_RUNS and B.backend_of(x).name == "numpy" and not wide
                and not self.per_image and runs_fit((H, Wd), (OH, OW), self.stride))
        per_image = C * KH * KW * OH * ow_cols * x.dtype.itemsize
        limit = (_PER_IMAGE_CHUNK_BYTES if self.per_image
                 else _RUNS_CHUNK_BYTES if runs else _CHUNK_BYTES)
        # chunks keep the host's copies in cache; a device takes the whole batch at once
        nb = N if B.backend_of(x).name != "numpy" else max(1, min(N, limit // per_image))
        if nb < N and not self.per_image:  # whole chunks per thread, evenly (side by side)
            nb = even_chunk_size(N, nb)
        self.geom = (N, C, H, Wd, OC, Cg, KH, KW, OH, OW, Hp, Wp, ow_cols, wide, nb)
        self.layout = ColumnLayout(self.geom, self.stride, self.padding, self.dilation,
                                   self.groups, self.per_image, _workspace, runs)

    def forward(self, x, W, b=None):
        xp = B.get_array_module(x)
        self._setup(x, W)
        N, C, H, Wd, OC, Cg, KH, KW, OH, OW, Hp, Wp, ow_cols, wide, nb = self.geom
        G = self.groups
        self.W = W
        if self.winograd:
            self.buf = self.cols = None
            if (KH, KW) == (3, 3) and self.stride == (1, 1):
                self.wino = Winograd3x3(x.shape, W.shape, self.padding, x.dtype, _workspace)
            else:
                self.wino = StackedWinograd(x.shape, W.shape, self.stride, self.padding,
                                            x.dtype, _workspace)
            keep_V = self.keep_col and self.wino.V_bytes() <= _KEEP_COL_BYTES
            return self.wino.forward(xp, x, W, b, keep_V=keep_V, keep_U=self.recorded)
        if self.layout.runs:  # the columns come from x's phases, no padded copy
            buf, windows = None, x
        else:
            buf = self.layout.padded(xp, x)
            windows = self.layout.windows(xp, buf)
        W2 = W.reshape(G, OC // G, Cg * KH * KW)
        y = xp.empty((N, OC, OH, OW), dtype=x.dtype)
        bias = None if b is None else b.reshape(1, OC, 1, 1)
        col_size = C * KH * KW * OH * ow_cols
        keep = self.keep_col and N * col_size * x.dtype.itemsize <= _KEEP_COL_BYTES
        self.cols = _workspace.take(xp, N * col_size, x.dtype) if keep else None
        chunks = self.layout.chunks()

        def chunk(k):
            n0, n1 = chunks[k]
            n = n1 - n0
            scratch = None if keep else _workspace.take(xp, n * col_size, x.dtype)
            slot = scratch if scratch is not None else self.layout.kept_col(self.cols, n0, n1)
            col = self.layout.im2col(xp, windows, n0, n1, slot)
            if self.per_image:
                self._per_image_forward(xp, W2[0], col, bias, y[n0:n1])
                _workspace.give(scratch)
                return
            y_buf = _workspace.take(xp, OC * n * OH * ow_cols, x.dtype)
            xp.matmul(W2, col, out=y_buf.reshape(G, OC // G, n * OH * ow_cols))
            y2 = self.layout.products(y_buf, OC, n)  # (n, OC, OH, OW) view
            # to NCHW, adding the bias on the way (no second pass over y)
            parallel_for(n, lambda lo, hi: _copy_add(xp, y[n0 + lo:n0 + hi], y2[lo:hi], bias),
                         nbytes=y_buf.nbytes, like=y_buf)
            _workspace.give(scratch, y_buf)

        if self.per_image:
            for k in range(len(chunks)):
                chunk(k)
        else:
            chunks_side_by_side(len(chunks), chunk, nbytes=y.nbytes, like=y)
        if keep or not self.recorded:  # backward needs the input only to redo im2col
            _workspace.give(buf)
            buf = None
        self.buf = buf
        return y

    def backward(self, gy):
        xp = B.get_array_module(gy)
        N, C, H, Wd, OC, Cg, KH, KW, OH, OW, Hp, Wp, ow_cols, wide, nb = self.geom
        G = self.groups
        need_x, need_W = self.inputs[0].requires_grad, self.inputs[1].requires_grad
        has_b = len(self.inputs) == 3
        need_b = has_b and self.inputs[2].requires_grad
        gx = gW = gb = None
        if self.winograd:
            gx, gW, gb = self.wino.backward(xp, gy, self.inputs[0].data, need_x, need_W,
                                            need_b)
            return (gx, gW, gb) if has_b else (gx, gW)
        if need_x or need_W:
            windows = None  # what im2col copies from when forward's columns were not kept
            if need_W and self.cols is None:
                windows = (self.inputs[0].data if self.layout.runs
                           else self.layout.windows(xp, self.buf))
            W2 = self.W.reshape(G, OC // G, Cg * KH * KW)
            W2t = W2.transpose(0, 2, 1)
            if need_x:
                gx = xp.empty((N, C, H, Wd), dtype=gy.dtype)
            if self.per_image:
                gW, gb = self._per_image_chunks(xp, gy, windows, W2t, need_x, need_W, need_b, gx)
            else:
                gW, gb = self._chunk_products_backward(xp, gy, windows, W2t, need_x, need_W,
                                                       need_b, gx)
            gW = None if gW is None else gW.reshape(self.W.shape)
        elif need_b:
            gb = gy.sum(axis=(0, 2, 3))
        if has_b:
            return gx, gW, gb
        return gx, gW

    def _chunk_products_backward(self, xp, gy, windows, W2t, need_x, need_W, need_b, gx):
        """(gW, gb) as asked, and gx (when given) filled, chunk by chunk: gy's chunk as
        (OC, n, OH, OW'), gW += gy2 @ col^T, gcol = W^T @ gy2 and col2im.  The chunks run side
        by side on a multi-core CPU; their sums are added in chunk order afterwards."""
        N, C, H, Wd, OC, Cg, KH, KW, OH, OW, Hp, Wp, ow_cols, wide, nb = self.geom
        G, dt, take = self.groups, gy.dtype, _workspace.take
        chunks = self.layout.chunks()
        gW_parts, gb_parts = [None] * len(chunks), [None] * len(chunks)

        def chunk(k):
            n0, n1 = chunks[k]
            n, size = n1 - n0, (n1 - n0) * OH * ow_cols
            # gy of the chunk as (OC, n, OH, OW'), zero in the discarded wide columns
            gy_buf = take(xp, OC * size, dt)
            if ow_cols > OW:
                gy_buf.reshape(OC, n, OH, ow_cols)[:, :, :, OW:] = 0
            gy_view = self.layout.products(gy_buf, OC, n)  # (n, OC, OH, OW) view
            parallel_for(n, lambda lo, hi: xp.copyto(gy_view[lo:hi], gy[n0 + lo:n0 + hi]),
                         nbytes=gy_buf.nbytes, like=gy_buf)
            gy2 = gy_buf.reshape(G, OC // G, size)
            if need_b:  # from the chunk while it is in cache (wide columns are 0)
                gb_parts[k] = gy2.reshape(OC, -1).sum(axis=1)
            col_buf = None
            if need_W:
                if self.cols is None:
                    col_buf = take(xp, C * KH * KW * size, dt)
                    col = self.layout.im2col(xp, windows, n0, n1, col_buf)
                else:
                    col = self.layout.kept_col(self.cols, n0, n1)
                gW_parts[k] = xp.matmul(gy2, col.transpose(0, 2, 1))
            if need_x:
                gcol_buf = take(xp, C * KH * KW * size, dt)
                gpad_buf = take(xp, self.layout.gpad_size(n), dt)
                gcol = xp.matmul(W2t, gy2, out=gcol_buf.reshape(G, Cg * KH * KW, size))
                self.layout.col2im(xp, gcol, n, gpad_buf, gx[n0:n1])
                _workspace.give(gcol_buf, gpad_buf)
            _workspace.give(gy_buf, col_buf)

        chunks_side_by_side(len(chunks), chunk, nbytes=gy.nbytes, like=gy)
        return sum_in_order(gW_parts) if need_W else None, \
            sum_in_order(gb_parts) if need_b else None

    def _per_image_chunks(self, xp, gy, windows, W2t, need_x, need_W, need_b, gx):
        """(gW, gb) as asked, and gx (when given) filled, with one product per image."""
        N, C, H, Wd, OC, Cg, KH, KW, OH, OW, Hp, Wp, ow_cols, wide, nb = self.geom
        take = _workspace.take
        scratch = (take(xp, C * KH * KW * nb * OH * ow_cols, gy.dtype)
                   if need_W and self.cols is None else None)
        gcol_buf = take(xp, C * KH * KW * nb * OH * ow_cols, gy.dtype) if need_x else None
        gpad_buf = take(xp, self.layout.gpad_size(nb), gy.dtype) if need_x else None
        gW = xp.zeros((1, OC, C * KH * KW), dtype=gy.dtype) if need_W else None
        gb = xp.zeros(OC, dtype=gy.dtype) if need_b else None
        for n0, n1 in self.layout.chunks():
            col = None
            if need_W:
                col = (self.layout.im2col(xp, windows, n0, n1, scratch)
                       if self.cols is None else self.layout.kept_col(self.cols, n0, n1))
            sums = self._per_image_backward(xp, gy[n0:n1], col, W2t[0], need_b, gcol_buf,
                                            gpad_buf, gx[n0:n1] if need_x else None)
            if need_W:
                gW[0] += sums[0]
            if need_b:
                gb += sums[-1]
        _workspace.give(scratch, gcol_buf, gpad_buf)
        return gW, gb

    # -- one product per image (tiny column matrices, on the host) ---------------------------
    def _per_image_forward(self, xp, W2, col, bias, y):
        """y (n, OC, OH, OW) = W2 (OC, K) @ col[i] (K, OH*OW) for each image, plus the bias."""
        OC = W2.shape[0]
        y3 = y.reshape(y.shape[0], OC, -1)

        def images(lo, hi):
            xp.matmul(W2, col[lo:hi], out=y3[lo:hi])
            if bias is not None:
                y3[lo:hi] += bias.reshape(OC, 1)

        parallel_for(y.shape[0], images, nbytes=y.nbytes, like=y)

    def _per_image_backward(self, xp, gy, col, W2t, need_b, gcol_buf, gpad_buf, gx):
        """For the images of gy (n, OC, OH, OW): (gW, gb) sums as asked (col None: no gW),
        and gx (n, C, H, W) through col2im when given.  The sums are taken image by image and
        added over the images at the end, so they don't depend on the number of threads."""
        n, OC = gy.shape[:2]
        g3 = gy.reshape(n, OC, -1)
        K = W2t.shape[0]
        per_W = xp.empty((n, OC, K), dtype=gy.dtype) if col is not None else None
        per_b = xp.empty((n, OC), dtype=gy.dtype) if need_b else None

        def images(lo, hi):
            if per_W is not None:
                xp.matmul(g3[lo:hi], col[lo:hi].transpose(0, 2, 1), out=per_W[lo:hi])
            if per_b is not None:
                g3[lo:hi].sum(axis=2, out=per_b[lo:hi])

        parallel_for(n, images, nbytes=gy.nbytes, like=gy)
        totals = [p.sum(axis=0) for p in (per_W, per_b) if p is not None]
        if gx is not None:
            gcol = gcol_buf[:n * K * g3.shape[2]].reshape(n, K, g3.shape[2])
            parallel_for(n, lambda lo, hi: xp.matmul(W2t, g3[lo:hi], out=gcol[lo:hi]),
                         nbytes=gcol.nbytes, like=gcol)
            N, C, H, Wd, OC, Cg, KH, KW, OH, OW = self.geom[:10]
            # (n, C, KH, KW, OH, OW) seen as col2im's (C, KH, KW, n, OH, OW): a view
            gcol6 = gcol.reshape(n, C, KH, KW, OH, OW).transpose(1, 2, 3, 0, 4, 5)
            self.layout.col2im(xp, gcol6, n, gpad_buf, gx)
        return totals

    def release(self) -> None:
        _workspace.give(getattr(self, "cols", None), getattr(self, "buf", None))
        if getattr(self, "wino", None) is not None:
            self.wino.release()
        super().release()


def _copy_add(xp, dst, src, bias=None):
    """``dst[...] = src (+ bias)``."""
    if bias is None:
        xp.copyto(dst, src)
    else:
        xp.add(src, bias, out=dst)


def conv2d(x, W, b=None, stride=1, padding=0, dilation=1, groups=1):
    """2-D convolution (cross-correlation, as ``torch.nn.functional.conv2d``).

    Parameters
    ----------
    x : Tensor or array (N, C, H, W), floating.
    W : Tensor or array (OC, C // groups, KH, KW), same dtype as ``x``.
    b : Tensor or array (OC,) or None.
    stride, padding, dilation : int or (h, w) pair; stride and dilation >= 1, padding >= 0
        (zero padding on both sides).
    groups : int >= 1 dividing both C and OC; channel group g of x meets filters
        g*OC/groups ... (g+1)*OC/groups - 1.

    Returns a Tensor (N, OC, OH, OW) with OH = (H + 2*pad - dil*(KH-1) - 1) // stride + 1.
    """
    x, W = _as_input(x, "x", "conv2d"), _as_input(W, "W", "conv2d")
    stride = _pair(stride, "stride", "conv2d", 1)
    padding = _pair(padding, "padding", "conv2d", 0)
    dilation = _pair(dilation, "dilation", "conv2d", 1)
    if not isinstance(groups, numbers.Integral) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"conv2d: groups must be a positive int, got {groups!r}")
    if x.ndim != 4:
        raise ValueError(f"conv2d: x must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")
    if W.ndim != 4:
        raise ValueError(f"conv2d: W must be 4-D (OC, C/groups, KH, KW), got shape "
                         f"{tuple(W.shape)}")
    N, C, H, Wd = x.shape
    OC, Cg, KH, KW = W.shape
    if OC % groups:
        raise ValueError(f"conv2d: W has {OC} output channels, not divisible by "
                         f"groups={groups}")
    if C != Cg * groups:
        raise ValueError(f"conv2d: x has {C} channels but W of shape {tuple(W.shape)} with "
                         f"groups={groups} expects {Cg * groups}")
    if x.dtype.kind != "f":
        raise TypeError(f"conv2d: x must be floating, got dtype {x.dtype}")
    if W.dtype != x.dtype:
        raise TypeError(f"conv2d: W has dtype {W.dtype} but x has {x.dtype}; they must match")
    inputs = [x, W]
    if b is not None:
        b = _as_input(b, "b", "conv2d")
        if tuple(b.shape) != (OC,):
            raise ValueError(f"conv2d: b must have shape ({OC},) to match W {tuple(W.shape)}, "
                             f"got {tuple(b.shape)}")
        if b.dtype != x.dtype:
            raise TypeError(f"conv2d: b has dtype {b.dtype} but x has {x.dtype}; they must "
                            "match")
        inputs.append(b)
    _output_hw("conv2d", (H, Wd), (KH, KW), stride, padding, dilation)
    recorded = is_grad_enabled() and any(t.requires_grad for t in inputs)
    keep_col = recorded and W.requires_grad
    return Conv2d(stride, padding, dilation, int(groups), keep_col, recorded)(*inputs)
