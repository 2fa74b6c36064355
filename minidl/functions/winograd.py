"""3x3 stride-1 convolution by Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray, "Fast
Algorithms for Convolutional Neural Networks", CVPR 2016): conv2d's host path for 3x3 layers,
and through :class:`StackedWinograd` for 5x5 layers with stride 1 or 2 (a stack of 3x3 pieces).

    x (N, C, H, W) NCHW,  W (OC, C, 3, 3) OIHW,  b (OC,)  ->  y (N, OC, OH, OW)
    OH = H + 2*pad_h - 2,  OW = W + 2*pad_w - 2
    th, tw = ceil(OH/2), ceil(OW/2) tiles per image,  T = n*th*tw tiles in a chunk of n images

Each 2x2 block of output comes from the 4x4 input tile under it (tiles overlap by 2):

    y_tile = A^T [ (G g G^T) * (B^T d B) ] A        (* elementwise, 4x4)

so a (filter, channel) pair costs 16 multiplies per 4 outputs instead of 36.  Summed over the
input channels, the elementwise product is, for each of the 16 tile positions xi, one matrix
product over all the tiles of a chunk:

    M[xi] (T, OC) = V[xi] (T, C) @ U[xi]^T (C, OC)     U = G g G^T,  V = B^T d B

16 products of 2*OC*C*T flops: 4/9 of im2col's single product.  Backward is the transpose of
each linear step (M' = A gy A^T for each 2x2 block of gy):

    gU[xi] = M'[xi]^T @ V[xi]    gW = G^T gU G
    gV[xi] = M'[xi] @ U[xi]      gx = overlap-add of the 4x4 tiles B gV B^T

B^T's entries are 0 and +-1 (two per row), so B^T d B and B gV B^T are adds; A^T M A and
A gy A^T are one BLAS product each with a Kronecker matrix (kron(A^T, A^T) is 4x16: a tile
flattened row-major is a vector).  With G's 1/2s, the float32 results differ from im2col's by
about 1e-6 relative (the tests bound it).

Layout: the transforms work on tile planes laid out (rows, columns, images, channels), so every
add runs over rows of (images x channels) elements -- thousands, not the 7 tiles of an NCHW
row.  The padded input is copied once into (Hp, Wp, n, C); B^T goes along the tile rows into
(4, th, Wp, n, C), then along the tile columns into V (16, th, tw, n, C), which is the (16, T,
C) operand of the products as it stands.  The products then give M (16, T, OC), the output
transform (2, 2, th, tw, n, OC), and one elementwise op puts the four block positions back into
NCHW.  Backward mirrors it.

The batch goes through in chunks of a few images, whose products take about _CHUNK_BYTES: a
chunk's tiles, transforms and products stay in its core's cache.  On a multi-core CPU whole
chunks run side by side, each thread taking a run of them, every step of a chunk in its thread
and BLAS on one thread each (small products split badly inside BLAS; _each_chunk).  V is kept,
chunk after chunk, for gW (made again from x in backward when it would take more than conv2d's
_KEEP_COL_BYTES) and U for gx; gW adds the chunks' parts in chunk order (the chunks are
whole runs per thread, so the sums are the same from run to run for a given thread count).

Measured against im2col on a 2-core CPU (AVX2 OpenBLAS, float32), training, batch 128, fwd+bwd:
32->64 channels at 14x14 21.6 -> 14.0 ms, 64->64 at 28x28 144 -> 94 ms, 128->128 at 14x14
127 -> 73 ms, 16->32 at 28x28 27.7 -> 21.4 ms; 5x5 32->64 stride 1 at 14x14 49 -> 38 ms,
stride 2 at 28x28 55 -> 40 ms; conv2d's comments list the shallow end.
"""
from __future__ import annotations

import numpy

from minidl import backend as B
from minidl._openblas import one_thread_each
from minidl.parallel import (chunks_side_by_side, even_chunk_size, get_num_threads,
                             parallel_for, sum_in_order)

__all__ = ["Winograd3x3", "StackedWinograd", "stacked_groups", "tile_waste"]

_BT = numpy.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], dtype=float)
_G = numpy.array([[1, 0, 0], [.5, .5, .5], [.5, -.5, .5], [0, 0, 1]])
_AT = numpy.array([[1, 1, 1, 0], [0, 1, -1, -1]], dtype=float)
# kron(L, R) @ vec(t) = vec(L t R^T) for a tile t flattened row-major
_KRONS = {
    "filter": numpy.kron(_G, _G),              # (16, 9):  U = G g G^T
    "filter_T": numpy.kron(_G, _G).T,          # (9, 16):  gg = G^T gU G
    "output": numpy.kron(_AT, _AT),            # (4, 16):  y = A^T M A
    "output_T": numpy.kron(_AT, _AT).T,        # (16, 4):  M' = A gy A^T
}
_consts: dict = {}
# images per chunk: as many as keep the chunk's largest product buffer about this size (2-core
# CPU, fwd+bwd: 2-4 MB best for 32->64 at 14x14 and 64->64 at 28x28; 16 MB 16% slower)
_CHUNK_BYTES = 3 << 20
# but at least this many images: a chunk of one image (5x5 32->32 at 28x28 stacked, 1.6 MB
# per image) makes every transform add a run of one image's channels (fwd+bwd, batch 128:
# 190 ms with 1 image per chunk, 137-145 ms with 3-6)
_MIN_CHUNK_IMAGES = 4


def _kron(xp, name, dtype):
    key = (xp.__name__, name, numpy.dtype(dtype))
    if key not in _consts:
        _consts[key] = xp.asarray(numpy.ascontiguousarray(_KRONS[name], dtype=dtype))
    return _consts[key]


def _tiles(OH, OW):
    return (OH + 1) // 2, (OW + 1) // 2


def tile_waste(OH, OW) -> float:
    """Fraction of the tiles' outputs that lie outside the (OH, OW) output (odd sizes)."""
    th, tw = _tiles(OH, OW)
    return 4 * th * tw / (OH * OW) - 1


class Winograd3x3:
    """One conv2d call through F(2x2, 3x3): ``forward``, then at most one ``backward``;
    ``release`` gives the kept buffers back.  Scratch arrays come from ``workspace``; a chunk's
    largest product buffer takes about ``chunk_bytes`` (None: _CHUNK_BYTES).

    ``blocks``, when given to forward and backward, keeps the output in its 2x2 blocks (for an
    op that works on them, :class:`minidl.functions.conv_bn_pool.ConvBatchNormMaxPool`); it
    has three methods, each called in chunk k's thread:

    * ``slot(k)``: a flat buffer of 4*OC*T elements for chunk k's output blocks;
    * ``done(k, yt)``: chunk k's blocks yt (2, 2, th, tw, n, OC) are in that slot;
    * ``gradient(k, out)``: write chunk k's output gradient, in the same blocks, into out
      (2, 2, th, tw, n, OC) and return it."""

    def __init__(self, x_shape, W_shape, padding, dtype, workspace, chunk_bytes=None):
        N, C, H, Wd = x_shape
        OC = W_shape[0]
        ph, pw = padding
        OH, OW = H + 2 * ph - 2, Wd + 2 * pw - 2
        th, tw = _tiles(OH, OW)
        # the padded plane covers every tile: 2*th + 2 >= OH + 2 = H + 2*ph rows
        self.geom = (N, C, H, Wd, OC, ph, pw, OH, OW, th, tw, 2 * th + 2, 2 * tw + 2)
        self.x_shape = tuple(x_shape)  # gx's shape (a subclass's input differs from geom's)
        self.ws, self.itemsize = workspace, numpy.dtype(dtype).itemsize
        per_image = 16 * max(C, OC) * th * tw * self.itemsize
        chunk_bytes = _CHUNK_BYTES if chunk_bytes is None else chunk_bytes
        nb = even_chunk_size(N, max(_MIN_CHUNK_IMAGES, chunk_bytes // per_image))
        self.chunks = [(n0, min(N, n0 + nb)) for n0 in range(0, N, nb)]
        self.V = self.U = None

    def V_bytes(self) -> int:
        """Bytes of the transformed input tiles V of the whole batch (kept for gW)."""
        N, C, H, Wd, OC, ph, pw, OH, OW, th, tw, Hp, Wp = self.geom
        return 16 * C * N * th * tw * self.itemsize

    def _chunk_V(self, n0, n1):
        """Chunk n0:n1's (16, T, C) slot in the kept V (chunk after chunk in one buffer)."""
        N, C, H, Wd, OC, ph, pw, OH, OW, th, tw, Hp, Wp = self.geom
        return self.V[16 * C * n0 * th * tw:16 * C * n1 * th * tw].reshape(16, -1, C)

    def _planes(self, xp, n, channels, dtype):
        """A scratch (Hp, Wp, n, channels) plane stack whose rows are n+1 images apart: a
        row pitch of a power of two bytes (64 images of 32 channels) would make every
        transposing copy to or from NCHW thrash the cache's sets."""
        Hp, Wp = self.geom[11:13]
        buf = self.ws.take(xp, (Hp, Wp, n + 1, channels), dtype)
        return buf, buf[:, :, :n]

    def _each_chunk(self, work, nbytes, like):
        """``work(k, n0, n1)`` for every chunk k of images n0:n1, side by side on a multi-core
        CPU (:func:`minidl.parallel.chunks_side_by_side`)."""
        chunks_side_by_side(len(self.chunks), lambda k: work(k, *self.chunks[k]),
                            nbytes=nbytes, like=like)

    # -- forward ------------------------------------------------------------------------------
    def forward(self, xp, x, W, b, keep_V, keep_U, blocks=None):
        """y (N, OC, OH, OW) = conv2d(x, W, b, padding); keeps V (for gW) and U (for gx) as
        asked.  With ``blocks`` (see the class docstring) the output stays in 2x2 blocks: each
        chunk's go to ``blocks.done`` and forward returns None (b must be None)."""
        N, C, H, Wd, OC, ph, pw, OH, OW, th, tw, Hp, Wp = self.geom
        dt, take = x.dtype, self.ws.take
        # U (16, OC, C) = G g G^T for every (filter, channel): W's 9 taps as rows
        U = xp.matmul(_kron(xp, "filter", dt), W.reshape(OC * C, 9).T).reshape(16, OC, C)
        Ut = U.transpose(0, 2, 1)
        y = None if blocks is not None else xp.empty((N, OC, OH, OW), dtype=dt)
        if keep_V:
            self.V = take(xp, 16 * C * N * th * tw, dt)

        def chunk(k, n0, n1):
            n = n1 - n0
            T = n * th * tw
            scratch_V = None if keep_V else take(xp, 16 * C * T, dt)
            M_buf = take(xp, 16 * OC * T, dt)
            yt = take(xp, 4 * OC * T, dt) if blocks is None else blocks.slot(k)
            V = self._chunk_V(n0, n1) if keep_V else scratch_V.reshape(16, T, C)
            self._input_transform(xp, x[n0:n1], V)
            M = _products(xp, V, Ut, M_buf.reshape(16, T, OC))
            xp.matmul(_kron(xp, "output", dt), M.reshape(16, T * OC), out=yt.reshape(4, -1))
            if blocks is None:
                self._scatter(xp, yt.reshape(2, 2, th, tw, n, OC), y[n0:n1], b)
                self.ws.give(yt)
            else:
                blocks.done(k, yt.reshape(2, 2, th, tw, n, OC))
            self.ws.give(scratch_V, M_buf)

        self._each_chunk(chunk, nbytes=N * OC * OH * OW * self.itemsize, like=x)
        self.U = U if keep_U else None
        return y

    def _input_transform(self, xp, x, V):
        """V (16, T, C) = B^T d B for the 4x4 input tile d of every output block of the n
        images of x, T = (ty, tx, image): V[(i, j), (ty, tx, m), c] from padded x[m, c,
        2*ty + i, 2*tx + j].  The padded input is laid out (Hp, Wp, n, C), so each step is
        an add over rows of (images, channels) -- long runs, not an NCHW row's 7 tiles: B^T
        along the tile rows into (4, th, Wp, n, C), then along the tile columns into V.  By
        images in parallel."""
        N, C, H, Wd, OC, ph, pw, OH, OW, th, tw, Hp, Wp = self.geom
        n, dt = x.shape[0], x.dtype
        buf, padded = self._planes(xp, n, C, dt)
        rows = self.ws.take(xp, (4, th, Wp, n, C), dt)
        V6 = V.reshape(4, 4, th, tw, n, C)

        def images(lo, hi):
            p = padded[:, :, lo:hi]
            self._fill_plane(xp, p, x[lo:hi])
            r = rows[:, :, :, lo:hi]
            _bt_rows(xp, _every_other(p, th, 0), r)                    # B^T d
            for k in range(4):
                _bt_rows(xp, _every_other(r[k], tw, 1), V6[k, :, :, :, lo:hi])  # (B^T d) B

        parallel_for(n, images, nbytes=V.nbytes, like=V)
        self.ws.give(buf, rows)

    def _fill_plane(self, xp, p, x):
        """p (Hp, Wp, m, C) = the images x (m, C, H, W), zero padded."""
        N, C, H, Wd, OC, ph, pw = self.geom[:7]
        _zero_border(p, ph, pw, H, Wd)
        xp.copyto(p[ph:ph + H, pw:pw + Wd], x.transpose(2, 3, 0, 1))

    def _plane_to_gx(self, xp, g, gx):
        """gx (m, C, H, W) = the padded plane g (Hp, Wp, m, C) without its padding."""
        N, C, H, Wd, OC, ph, pw = self.geom[:7]
        xp.copyto(gx, g[ph:ph + H, pw:pw + Wd].transpose(2, 3, 0, 1))

    def _scatter(self, xp, yt, y, b):
        """y (n, OC, OH, OW) from the output blocks yt (2, 2, th, tw, n, OC), plus the bias b
        (OC,) or None."""
        N, C, H, Wd, OC, ph, pw, OH, OW, th, tw, Hp, Wp = self.geom
        n = y.shape[0]
        full = y if (OH, OW) == (2 * th, 2 * tw) else \
            self.ws.take(xp, (n, OC, 2 * th, 2 * tw), y.dtype)
        blocks = full.reshape(n, OC, th, 2, tw, 2).transpose(3, 5, 2, 4, 0, 1)

        def images(lo, hi):
            # one elementwise op for all four block positions: NumPy then walks yt in order
            # (a plain copy would walk y in order, reading yt with a power-of-two stride)
            if b is None:
                xp.positive(yt[..., lo:hi, :], out=blocks[..., lo:hi, :])
            else:
                xp.add(yt[..., lo:hi, :], b, out=blocks[..., lo:hi, :])
            if full is not y:
                xp.copyto(y[lo:hi], full[lo:hi, :, :OH, :OW])

        parallel_for(n, images, nbytes=y.nbytes, like=y)
        if full is not y:
            self.ws.give(full)

    # -- backward -----------------------------------------------------------------------------
    def backward(self, xp, gy, x, need_x, need_W, need_b, blocks=None):
        """(gx, gW, gb) for gy (N, OC, OH, OW), each None when not asked.  gW and gb are
        summed chunk after chunk, in order (the same sums from run to run).  x is
        the forward's input: V is made again from it, chunk by chunk, when forward did not
        keep it.  With ``blocks`` (see the class docstring) gy is None and each chunk's
        gradient comes in 2x2 blocks from ``blocks.gradient`` (need_b must be False)."""
        N, C, H, Wd, OC, ph, pw, OH, OW, th, tw, Hp, Wp = self.geom
        dt, take = x.dtype, self.ws.take
        gx = xp.empty(self.x_shape, dtype=dt) if need_x else None
        gU_parts = [None] * len(self.chunks)   # each chunk's sum, added in order below
        redo = need_W and self.V is None

        def chunk(k, n0, n1):
            T = (n1 - n0) * th * tw
            gyt_buf, Mg = take(xp, 4 * OC * T, dt), take(xp, 16 * OC * T, dt).reshape(16, T, OC)
            gyt = self._gather(xp, gy[n0:n1], gyt_buf) if blocks is None else \
                blocks.gradient(k, gyt_buf[:4 * OC * T].reshape(2, 2, th, tw, n1 - n0, OC))
            xp.matmul(_kron(xp, "output_T", dt), gyt.reshape(4, T * OC),
                      out=Mg.reshape(16, T * OC))
            V_buf = None
            if need_W:
                if redo:
                    V_buf = take(xp, 16 * C * T, dt)
                    V = V_buf.reshape(16, T, C)
                    self._input_transform(xp, x[n0:n1], V)
                else:
                    V = self._chunk_V(n0, n1)
                gU_parts[k] = _products(xp, Mg.transpose(0, 2, 1), V,
                                        xp.empty((16, OC, C), dtype=dt))
            if need_x:
                gV_buf = take(xp, 16 * C * T, dt)
                gV = _products(xp, Mg, self.U, gV_buf.reshape(16, T, C))
                self._overlap_add(xp, gV, gx[n0:n1])
                self.ws.give(gV_buf)
            self.ws.give(gyt_buf, Mg, V_buf)

        if need_x or need_W:
            self._each_chunk(chunk, nbytes=N * OC * OH * OW * self.itemsize, like=x)
        gb = None
        if need_b:
            gb = xp.zeros(OC, dtype=dt)
            for n0, n1 in self.chunks:
                gb += gy[n0:n1].sum(axis=(0, 2, 3))
        gW = None
        if need_W:
            gU = sum_in_order(gU_parts)
            gW = xp.matmul(_kron(xp, "filter_T", dt), gU.reshape(16, OC * C))  # (9, OC*C)
            gW = xp.ascontiguousarray(gW.T).reshape(OC, C, 3, 3)
        self.release()
        return gx, gW, gb

    def _gather(self, xp, gy, gyt_buf):
        """gyt (2, 2, th, tw, n, OC): gy (n, OC, OH, OW) by 2x2 output block, zero where a
        block sticks out of an odd-sized output."""
        N, C, H, Wd, OC, ph, pw, OH, OW, th, tw, Hp, Wp = self.geom
        n = gy.shape[0]
        gyt = gyt_buf[:4 * OC * n * th * tw].reshape(2, 2, th, tw, n, OC)

        def images(lo, hi):
            g = gyt[..., lo:hi, :]
            if (OH, OW) == (2 * th, 2 * tw):
                xp.copyto(g, gy[lo:hi].reshape(hi - lo, OC, th, 2, tw, 2)
                          .transpose(3, 5, 2, 4, 0, 1))
                return
            for a in range(2):
                for c in range(2):
                    ha, wc = (OH - a + 1) // 2, (OW - c + 1) // 2
                    g[a, c, ha:] = 0
                    g[a, c, :ha, wc:] = 0
                    xp.copyto(g[a, c, :ha, :wc], gy[lo:hi, :, a::2, c::2].transpose(2, 3, 0, 1))

        parallel_for(n, images, nbytes=gy.nbytes, like=gy)
        return gyt

    def _overlap_add(self, xp, gV, gx):
        """gx (n, C, H, W): the tile gradients B gV B^T of gV (16, T, C) added up where the
        tiles overlap, cropped to the input.  Along the tile columns into (4, th, Wp, n, C),
        then along the tile rows into the padded (Hp, Wp, n, C) plane; by images in
        parallel."""
        N, C, H, Wd, OC, ph, pw, OH, OW, th, tw, Hp, Wp = self.geom
        n, dt = gx.shape[0], gV.dtype
        g6 = gV.reshape(4, 4, th, tw, n, C)
        cols = self.ws.take(xp, (4, th, Wp, n, C), dt)
        tmp = self.ws.take(xp, (th, Wp, n, C), dt)
        buf, gpad = self._planes(xp, n, C, dt)

        def images(lo, hi):
            t = tmp[:, :, lo:hi]
            for k in range(4):
                _b_overlap_add(xp, g6[k, :, :, :, lo:hi], cols[k, :, :, lo:hi], tw, 1,
                               t[:, :tw])
            g = gpad[:, :, lo:hi]
            _b_overlap_add(xp, cols[:, :, :, lo:hi], g, th, 0, t)
            self._plane_to_gx(xp, g, gx[lo:hi])

        parallel_for(n, images, nbytes=gV.nbytes, like=gV)
        self.ws.give(cols, tmp, buf)

    def release(self) -> None:
        self.ws.give(self.V)
        self.V = self.U = None


def stacked_groups(k: int, stride: int) -> int | None:
    """How many 3x3 stride-1 pieces :class:`StackedWinograd` splits a kernel of k taps with
    this stride into along one axis, or None when it does not: stride 1 takes odd kernels
    (pieces 2 taps apart, which share one input transform), stride 2 kernels of up to 6 taps
    (the two phases, 3 taps each at most)."""
    if stride == 1:
        return k // 2 if k >= 3 and k % 2 else None
    if stride == 2:
        return 2 if k <= 6 else None
    return None


def _axis_plan(k, s, pad, size, out):
    """One axis of :class:`StackedWinograd`'s split: (offsets, taps, ranges).  Piece g reads the
    padded input at s*i + offsets[g] for its rows i = 0 .. out+1; tap t of the kernel is tap
    u of piece g for (g, u) = taps[t]; ranges[g] = (lo, hi) are the rows i whose input is
    inside the unpadded x (row s*i + offsets[g] - pad), the rest being padding."""
    if s == 1:  # pieces 2 taps apart: 0-2, 2-4, ...; a shared tap belongs to the later piece
        count = stacked_groups(k, 1)
        offsets = [2 * g for g in range(count)]
        taps = [(min(t // 2, count - 1), t - 2 * min(t // 2, count - 1)) for t in range(k)]
    else:       # the s phases: rows s*i + r, taps r, r + s, r + 2s
        offsets = list(range(s))
        taps = [(t % s, t // s) for t in range(k)]
    ranges = []
    for r in offsets:
        lo = max(0, -((r - pad) // s))                 # ceil((pad - r) / s)
        hi = min(out + 2, -((r - pad - size) // s))    # ceil((size + pad - r) / s)
        ranges.append((lo, max(lo, hi)))
    return offsets, taps, ranges


class StackedWinograd(Winograd3x3):
    """A KxK convolution with stride 1 or 2 (5x5 in conv2d) as ONE 3x3 stride-1 convolution
    through F(2x2, 3x3), on a stack of pieces of the input:

        y[o] = sum_t w[t] xpad[s*o + t] = sum_g sum_u w_g[u] x_g[o + u],   x_g[i] = xpad[s*i + r_g]

    along each axis, with t = s*u + r_g.  Stride 2 splits the input into its 2 phases (even and
    odd rows: r = 0, 1) and the kernel into taps (0, 2, 4) and (1, 3); stride 1 into the input
    shifted by 0 and 2 rows and the kernel into taps 0-1 and 2-4 (r = 0, 2).  The pieces of
    both axes are stacked as channels -- (gh, gw, c), 4*C of them for a 5x5 kernel -- and the
    kernel's pieces as the 3x3 filters of those channels, zero where a piece has no tap (6 x 6
    slots for 25 taps).  Winograd then costs 16 multiplies per 2x2 outputs per stacked channel,
    64 per original channel: 16 per output, against 25 for the direct method, and its
    products have K = 4*C.  With stride 1 the pieces' input tiles are one transform's tiles
    shifted (``shared``), and their gradients add back into it; with stride 2 the phases are
    laid side by side in the tile planes that the 3x3 path fills anyway (``_fill_plane``) and
    go back to x from there (``_plane_to_gx``).  gW gathers the kernel's taps from the 3x3
    filters' gradients.
    """

    def __init__(self, x_shape, W_shape, stride, padding, dtype, workspace):
        N, C, H, Wd = x_shape
        OC, _, KH, KW = W_shape
        (sh, sw), (ph, pw) = stride, padding
        if sh != sw or stacked_groups(KH, sh) is None or stacked_groups(KW, sw) is None:
            raise ValueError(f"StackedWinograd: a {KH}x{KW} kernel with stride {stride} does "
                             "not split into 3x3 pieces (see stacked_groups)")
        OH, OW = (H + 2 * ph - KH) // sh + 1, (Wd + 2 * pw - KW) // sw + 1
        self.plans = (_axis_plan(KH, sh, ph, H, OH), _axis_plan(KW, sw, pw, Wd, OW))
        self.real = (C, H, Wd, sh, sw, ph, pw)
        G = len(self.plans[0][0]) * len(self.plans[1][0])
        super().__init__((N, G * C, OH + 2, OW + 2), (OC, G * C, 3, 3), (0, 0), dtype,
                         workspace)
        self.x_shape = tuple(x_shape)
        # stride 1: the pieces are x shifted by whole tiles (2 rows), so their input tiles are
        # those of ONE 3x3 Winograd over the padded x, with a tile more per further piece
        # along each axis (odd kernels): transform x once (C channels), copy the shifted tiles
        self.shared = None
        if sh == 1:
            self.shared = Winograd3x3(x_shape, (OC, C, 3, 3), padding, dtype, workspace)
            GH, GW = len(self.plans[0][0]), len(self.plans[1][0])
            assert self.shared.geom[9:11] == (self.geom[9] + GH - 1, self.geom[10] + GW - 1)
        else:  # stride 2: every element of x is in exactly one phase, as one of its rows i
            assert self._phases_cover_x_once()

    def _pieces(self):
        """(channel block, row offset, row range, column offset, column range) per piece."""
        (offs_h, _, rng_h), (offs_w, _, rng_w) = self.plans
        C = self.real[0]
        for gh, (rh, (ilo, ihi)) in enumerate(zip(offs_h, rng_h)):
            for gw, (rw, (jlo, jhi)) in enumerate(zip(offs_w, rng_w)):
                q = gh * len(offs_w) + gw
                yield slice(q * C, (q + 1) * C), rh, (ilo, ihi), rw, (jlo, jhi)

    def _shifts(self):
        """(th, tw) tiles of a stacked image, (th0, tw0) of the shared transform's, C, and
        the pieces along each axis (GH, GW)."""
        return (*self.geom[9:11], *self.shared.geom[9:11], self.real[0],
                len(self.plans[0][0]), len(self.plans[1][0]))

    def _input_transform(self, xp, x, V):
        """V (16, T, G*C): with stride 1, piece (a, b)'s tiles are the shared transform's
        tiles (a, b) further on; else the 3x3 path's transform of the stacked plane."""
        if self.shared is None:
            return super()._input_transform(xp, x, V)
        n = x.shape[0]
        th, tw, th0, tw0, C, GH, GW = self._shifts()
        buf = self.ws.take(xp, 16 * th0 * tw0 * n * C, V.dtype)
        V0 = buf.reshape(16, th0 * tw0 * n, C)
        self.shared._input_transform(xp, x, V0)
        V0 = V0.reshape(16, th0, tw0, n, C)
        V7 = V.reshape(16, th, tw, n, GH, GW, C)
        for a in range(GH):
            for b in range(GW):
                xp.copyto(V7[:, :, :, :, a, b], V0[:, a:a + th, b:b + tw])
        self.ws.give(buf)

    def _overlap_add(self, xp, gV, gx):
        """gx from gV (16, T, G*C): with stride 1, the pieces' tile gradients add into the
        shared transform's tiles, which then go through its overlap-add once."""
        if self.shared is None:
            return super()._overlap_add(xp, gV, gx)
        n = gx.shape[0]
        th, tw, th0, tw0, C, GH, GW = self._shifts()
        buf = self.ws.take(xp, 16 * th0 * tw0 * n * C, gV.dtype)
        g0 = buf.reshape(16, th0, tw0, n, C)
        g7 = gV.reshape(16, th, tw, n, GH, GW, C)
        g0[...] = 0
        for a in range(GH):
            for b in range(GW):
                g0[:, a:a + th, b:b + tw] += g7[:, :, :, :, a, b]
        self.shared._overlap_add(xp, buf.reshape(16, -1, C), gx)
        self.ws.give(buf)

    def _fill_plane(self, xp, p, x):
        """Stride 2: p (Hp, Wp, m, 4*C) = the phases of the images x (m, C, H, W), side by side
        as channels.  x goes through one transposing copy to an (H, W, m, C) plane; the
        phases then come from it with runs of channels, not from strided NCHW reads."""
        plane = self.ws.take(xp, (x.shape[2], x.shape[3]) + x.shape[:2], x.dtype)
        xp.copyto(plane, x.transpose(2, 3, 0, 1))
        for block, r_h, rows, r_w, cols in self._pieces():
            piece = p[..., block]
            _zero_border(piece, rows[0], cols[0], rows[1] - rows[0], cols[1] - cols[0])
            if rows[1] > rows[0] and cols[1] > cols[0]:
                xp.copyto(piece[rows[0]:rows[1], cols[0]:cols[1]],
                          self._window(plane, r_h, rows, r_w, cols))
        self.ws.give(plane)

    def _plane_to_gx(self, xp, g, gx):
        """Stride 2: gx (m, C, H, W) from the phases' gradients in g (Hp, Wp, m, 4*C): each
        phase goes back to its rows and columns of an (H, W, m, C) plane, which then goes to
        NCHW in one transposing copy."""
        plane = self.ws.take(xp, gx.shape[2:] + gx.shape[:2], gx.dtype)
        for block, r_h, rows, r_w, cols in self._pieces():
            if rows[1] > rows[0] and cols[1] > cols[0]:
                xp.copyto(self._window(plane, r_h, rows, r_w, cols),
                          g[rows[0]:rows[1], cols[0]:cols[1], :, block])
        xp.copyto(gx, plane.transpose(2, 3, 0, 1))
        self.ws.give(plane)

    def _window(self, plane, r_h, rows, r_w, cols):
        """The view of an (H, W, ...) plane of x that rows x cols of the phase with offsets
        (r_h, r_w) hold."""
        C, H, Wd, sh, sw, ph, pw = self.real
        h0, w0 = sh * rows[0] + r_h - ph, sw * cols[0] + r_w - pw
        return plane[h0:h0 + sh * (rows[1] - rows[0] - 1) + 1:sh,
                     w0:w0 + sw * (cols[1] - cols[0] - 1) + 1:sw]

    def _phases_cover_x_once(self) -> bool:
        """Whether every element of x is in exactly one phase's rows and columns."""
        C, H, Wd, sh, sw, ph, pw = self.real
        for (offsets, _, ranges), s, pad, size in zip(self.plans, (sh, sw), (ph, pw), (H, Wd)):
            count = numpy.zeros(size, dtype=int)
            for r, (lo, hi) in zip(offsets, ranges):
                count[s * numpy.arange(lo, hi) + r - pad] += 1
            if not (count == 1).all():
                return False
        return True

    def _stack_index(self, xp):
        """Index arrays putting the kernel's (KH, KW) taps in the (GH, 3, GW, 3) slots."""
        (_, taps_h, _), (_, taps_w, _) = self.plans
        gh, uh = (xp.asarray(numpy.array(v)[:, None]) for v in zip(*taps_h))
        gw, uw = (xp.asarray(numpy.array(v)[None, :]) for v in zip(*taps_w))
        return gh, uh, gw, uw

    def forward(self, xp, x, W, b, keep_V, keep_U):
        """y = conv2d(x, W, b, stride, padding) for W (OC, C, KH, KW): its taps go into the
        stacked 3x3 filters (OC, G*C, 3, 3), zero where a piece has no tap."""
        OC, C, KH, KW = W.shape
        GH, GW = len(self.plans[0][0]), len(self.plans[1][0])
        W6 = xp.zeros((GH, 3, GW, 3, OC, C), dtype=W.dtype)
        W6[self._stack_index(xp)] = W.transpose(2, 3, 0, 1)
        W3 = xp.ascontiguousarray(W6.transpose(4, 0, 2, 5, 1, 3)).reshape(OC, -1, 3, 3)
        return super().forward(xp, x, W3, b, keep_V, keep_U)

    def backward(self, xp, gy, x, need_x, need_W, need_b):
        """(gx, gW, gb) as Winograd3x3.backward; gW (OC, C, KH, KW) gathered from the
        stacked 3x3 filters' gradients."""
        gx, gW3, gb = super().backward(xp, gy, x, need_x, need_W, need_b)
        gW = None
        if gW3 is not None:
            GH, GW = len(self.plans[0][0]), len(self.plans[1][0])
            OC, C = gW3.shape[0], self.real[0]
            gW6 = gW3.reshape(OC, GH, GW, C, 3, 3).transpose(1, 4, 2, 5, 0, 3)
            gW = xp.ascontiguousarray(gW6[self._stack_index(xp)].transpose(2, 3, 0, 1))
        return gx, gW, gb


def _products(xp, a, b, out):
    """out[k] = a[k] @ b[k] for the 16 tile positions k.  On a multi-core CPU the products
    run side by side, each on one BLAS thread: (T, 32) @ (32, 64) and the like split badly
    inside BLAS (2 cores: 117-173 GFLOP/s that way, 178-197 side by side)."""
    if B.backend_of(out).name == "numpy" and get_num_threads() > 1:
        with one_thread_each() as told:
            if told:
                parallel_for(a.shape[0], lambda lo, hi: xp.matmul(a[lo:hi], b[lo:hi],
                                                                  out=out[lo:hi]),
                             nbytes=out.nbytes + a.nbytes + b.nbytes, like=out)
                return out
    return xp.matmul(a, b, out=out)


def _zero_border(p, ph, pw, H, W):
    """Zero the (Hp, Wp, ...) plane stack p outside its [ph:ph+H, pw:pw+W] interior."""
    p[:ph] = 0
    p[ph + H:] = 0
    p[ph:ph + H, :pw] = 0
    p[ph:ph + H, pw + W:] = 0


def _every_other(a, count, axis):
    """The 4 views a[..., i + 2*t, ...] (t < count) along ``axis``, i = 0..3: the rows (or
    columns) i of all the 4x4 tiles, which overlap by 2."""
    lead = (slice(None),) * axis
    return [a[lead + (slice(i, i + 2 * count - 1, 2),)] for i in range(4)]


def _b_overlap_add(xp, g, out, count, axis, tmp):
    """out = the overlap-add along ``axis`` of the tiles' B-transformed rows:
    out[2*t + i] = sum over the tiles t, i of sum_k B^T[k, i] g[k][t], for g (4, ...) with
    ``count`` tiles along ``axis`` and out with 2*count + 2 along it.  B^T's columns are
    (1, 0, 0, 0), (0, 1, -1, 1), (-1, 1, 1, 0), (0, 0, 0, -1); tmp is g[0]-shaped scratch."""
    d0, d1, d2, d3 = _every_other(out, count, axis)
    lead = (slice(None),) * axis
    xp.copyto(d0, g[0])                     # even rows, first write
    xp.subtract(g[1], g[2], out=d1)         # odd rows, first write
    d1 += g[3]
    out[lead + (slice(2 * count, None),)] = 0   # the last two rows: only the adds below
    xp.add(g[1], g[2], out=tmp)
    tmp -= g[0]
    d2 += tmp
    d3 -= g[3]


def _bt_rows(xp, d, out):
    """out[k] = sum_i B^T[k, i] d[i] over the first axis of d (4, ...)."""
    xp.subtract(d[0], d[2], out=out[0])
    xp.add(d[1], d[2], out=out[1])
    xp.subtract(d[2], d[1], out=out[2])
    xp.subtract(d[1], d[3], out=out[3])
