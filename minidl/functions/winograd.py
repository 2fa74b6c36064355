"""3x3 stride-1 convolution by Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray, "Fast
Algorithms for Convolutional Neural Networks", CVPR 2016): conv2d's host path for 3x3 layers.

    x (N, C, H, W) NCHW,  W (OC, C, 3, 3) OIHW,  b (OC,)  ->  y (N, OC, OH, OW)
    OH = H + 2*pad_h - 2,  OW = W + 2*pad_w - 2
    th, tw = ceil(OH/2), ceil(OW/2) tiles per image,  T = n*th*tw tiles in a chunk of n images

Each 2x2 block of output comes from the 4x4 input tile under it (tiles overlap by 2):

    y_tile = A^T [ (G g G^T) * (B^T d B) ] A        (* elementwise, 4x4)

so a (filter, channel) pair costs 16 multiplies per 4 outputs instead of 36.  Summed over the
input channels, the elementwise product is, for each of the 16 tile positions xi, one matrix
product over all the tiles of a chunk:

    M[xi] (OC, T) = U[xi] (OC, C) @ V[xi] (C, T)     U = G g G^T,  V = B^T d B

16 products of 2*OC*C*T flops: 4/9 of im2col's single product.  Backward is the transpose of
each linear step (M' = A gy A^T for each 2x2 block of gy):

    gU[xi] = M'[xi] @ V[xi]^T    gW = G^T gU G
    gV[xi] = U[xi]^T @ M'[xi]    gx = overlap-add of the 4x4 tiles B gV B^T

B^T's entries are 0 and +-1, so B^T d B and B gV B^T are 8 adds per tile, done channel by
channel on host threads right after the tile copy (and right before the overlap-add), while
the tiles are in cache.  A^T M A and A gy A^T are one BLAS product each with a Kronecker
matrix (kron(A^T, A^T) is 4x16: a tile flattened row-major is a vector).  With G's 1/2s, the
float32 results differ from im2col's by about 1e-6 relative (the tests bound it).

The batch goes through in chunks of images whose products fit in about _CHUNK_BYTES (the
tiles, transforms and products of a chunk then stay in the last-level cache); V is kept, chunk
after chunk, for gW (made again from x in backward when it would take more than conv2d's
_KEEP_COL_BYTES) and U for gx.  The padded input and its gradient are laid out (C, n, Hp,
Wp), so the copies and adds walk both sides in the same order.

Measured against im2col on a 2-core CPU (AVX2 OpenBLAS, float32): training, batch 128, fwd+bwd:
32->64 channels at 14x14 18.6 -> 17.8 ms, 64->64 at 28x28 139 -> 132 ms (V made again in
backward; 133 -> 110 ms when kept), 128->128 at 14x14 125 -> 81 ms; inference, batch 16:
128->128 at 28x28 18.4 -> 13.9 ms, 256->256 at 14x14 16.5 -> 10.6 ms, 64->64 at 56x56 about
even.  At 7x7 the tiles overhang the output by 31% and conv2d keeps im2col.
"""
from __future__ import annotations

import numpy

from minidl.parallel import parallel_for

__all__ = ["Winograd3x3", "tile_waste"]

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
# images per chunk: as many as keep the chunk's largest product buffer about this size
_CHUNK_BYTES = 16 << 20


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
    ``release`` gives the kept buffers back.  Scratch arrays come from ``workspace``."""

    def __init__(self, x_shape, W_shape, padding, dtype, workspace):
        N, C, H, Wd = x_shape
        OC = W_shape[0]
        ph, pw = padding
        OH, OW = H + 2 * ph - 2, Wd + 2 * pw - 2
        th, tw = _tiles(OH, OW)
        # the padded plane covers every tile: 2*th + 2 >= OH + 2 = H + 2*ph rows
        self.geom = (N, C, H, Wd, OC, ph, pw, OH, OW, th, tw, 2 * th + 2, 2 * tw + 2)
        self.ws, self.itemsize = workspace, numpy.dtype(dtype).itemsize
        per_image = 16 * max(C, OC) * th * tw * self.itemsize
        count = -(-N // max(1, _CHUNK_BYTES // per_image))
        nb = -(-N // count)  # equal chunks: no small last one
        self.chunks = [(n0, min(N, n0 + nb)) for n0 in range(0, N, nb)]
        self.V = self.U = None

    def V_bytes(self) -> int:
        """Bytes of the transformed input tiles V of the whole batch (kept for gW)."""
        N, C, H, Wd, OC, ph, pw, OH, OW, th, tw, Hp, Wp = self.geom
        return 16 * C * N * th * tw * self.itemsize

    def _chunk_V(self, n0, n1):
        """Chunk n0:n1's (16, C, T) slot in the kept V (chunk after chunk in one buffer)."""
        N, C, H, Wd, OC, ph, pw, OH, OW, th, tw, Hp, Wp = self.geom
        return self.V[16 * C * n0 * th * tw:16 * C * n1 * th * tw].reshape(16, C, -1)

    # -- forward ------------------------------------------------------------------------------
    def forward(self, xp, x, W, b, keep_V, keep_U):
        """y (N, OC, OH, OW) = conv2d(x, W, b, padding); keeps V (for gW) and U (for gx) as
        asked."""
        N, C, H, Wd, OC, ph, pw, OH, OW, th, tw, Hp, Wp = self.geom
        dt, take = x.dtype, self.ws.take
        # U (16, OC, C) = G g G^T for every (filter, channel): W's 9 taps as rows
        U = xp.matmul(_kron(xp, "filter", dt), W.reshape(OC * C, 9).T).reshape(16, OC, C)
        y = xp.empty((N, OC, OH, OW), dtype=dt)
        bias = None if b is None else b.reshape(1, OC, 1, 1)
        nb = self.chunks[0][1]
        if keep_V:
            self.V = take(xp, 16 * C * N * th * tw, dt)
        scratch_V = None if keep_V else take(xp, 16 * C * nb * th * tw, dt)
        tmp_buf = take(xp, 16 * C * nb * th * tw, dt)
        M_buf = take(xp, 16 * OC * nb * th * tw, dt)
        yt_buf = take(xp, 4 * OC * nb * th * tw, dt)
        for n0, n1 in self.chunks:
            T = (n1 - n0) * th * tw
            V = self._chunk_V(n0, n1) if keep_V else scratch_V[:16 * C * T].reshape(16, C, T)
            self._input_transform(xp, x[n0:n1], V, tmp_buf)
            M = xp.matmul(U, V, out=M_buf[:16 * OC * T].reshape(16, OC, T))
            yt = yt_buf[:4 * OC * T].reshape(2, 2, OC, n1 - n0, th, tw)
            xp.matmul(_kron(xp, "output", dt), M.reshape(16, OC * T), out=yt.reshape(4, OC * T))
            self._scatter(xp, yt, y[n0:n1], bias)
        self.ws.give(scratch_V, tmp_buf, M_buf, yt_buf)
        self.U = U if keep_U else None
        return y

    def _input_transform(self, xp, x, V, tmp_buf):
        """V (16, C, T) = B^T d B for the 4x4 input tile d of every output block of the n
        images of x, d[i, j, c, m, ty, tx] = padded x[m, c, 2*ty + i, 2*tx + j].  By channels
        in parallel: each thread pads its channels, copies their tiles into V and transforms
        them there (rows into ``tmp_buf``, columns back) while they are in cache."""
        N, C, H, Wd, OC, ph, pw, OH, OW, th, tw, Hp, Wp = self.geom
        n, dt, it = x.shape[0], x.dtype, x.dtype.itemsize
        padded = self.ws.take(xp, (C, n, Hp, Wp), dt)
        windows = xp.lib.stride_tricks.as_strided(  # read-only view, never written through
            padded, shape=(4, 4, C, n, th, tw),
            strides=(Wp * it, it, n * Hp * Wp * it, Hp * Wp * it, 2 * Wp * it, 2 * it))
        V4 = V.reshape(4, 4, C, n, th, tw)
        tmp = tmp_buf[:V.size].reshape(4, 4, C, n, th, tw)

        def channels(lo, hi):
            p = padded[lo:hi]
            p.fill(0)
            xp.copyto(p[:, :, ph:ph + H, pw:pw + Wd], x[:, lo:hi].transpose(1, 0, 2, 3))
            d, t = V4[:, :, lo:hi], tmp[:, :, lo:hi]
            xp.copyto(d, windows[:, :, lo:hi])
            _bt_rows(xp, d, t)                  # t = B^T d
            _bt_rows(xp, t.swapaxes(0, 1), d.swapaxes(0, 1))   # V = t B

        parallel_for(C, channels, nbytes=V.nbytes, like=V)
        self.ws.give(padded)

    def _scatter(self, xp, yt, y, bias):
        """y (n, OC, OH, OW) from the output blocks yt (2, 2, OC, n, th, tw), plus the bias:
        each block position (a, c) is one strided plane of y."""
        N, C, H, Wd, OC, ph, pw, OH, OW, th, tw, Hp, Wp = self.geom

        def images(lo, hi):
            for blocks, plane in self._block_planes(yt, y, lo, hi):
                if bias is None:
                    xp.copyto(plane, blocks)
                else:
                    xp.add(blocks, bias, out=plane)

        parallel_for(y.shape[0], images, nbytes=y.nbytes, like=y)

    def _block_planes(self, tiles, y, lo, hi):
        """For images lo:hi, the 4 pairs (tiles at 2x2 block position (a, c), seen (n, OC,
        ty, tx) and cropped to the output; the strided plane y[:, :, a::2, c::2] they hold),
        of block tiles (2, 2, OC, n, th, tw) and an output-shaped y (n, OC, OH, OW)."""
        OH, OW = self.geom[7:9]
        for a in range(2):
            for c in range(2):
                blocks = tiles[a, c, :, lo:hi, :(OH - a + 1) // 2, :(OW - c + 1) // 2]
                yield blocks.transpose(1, 0, 2, 3), y[lo:hi, :, a::2, c::2]

    # -- backward -----------------------------------------------------------------------------
    def backward(self, xp, gy, x, need_x, need_W, need_b):
        """(gx, gW, gb) for gy (N, OC, OH, OW), each None when not asked.  gW and gb are
        summed chunk after chunk, in order (independent of the thread count).  x is the
        forward's input: V is made again from it, chunk by chunk, when forward did not keep
        it."""
        N, C, H, Wd, OC, ph, pw, OH, OW, th, tw, Hp, Wp = self.geom
        dt, take = gy.dtype, self.ws.take
        nb = self.chunks[0][1]
        gx = xp.empty((N, C, H, Wd), dtype=dt) if need_x else None
        gU = xp.zeros((16, OC, C), dtype=dt) if need_W else None
        gb = xp.zeros(OC, dtype=dt) if need_b else None
        gyt_buf = take(xp, 4 * OC * nb * th * tw, dt)
        Mg_buf = take(xp, 16 * OC * nb * th * tw, dt)
        gV_buf = take(xp, 16 * C * nb * th * tw, dt) if need_x else None
        gd_buf = take(xp, 16 * C * nb * th * tw, dt) if need_x else None
        redo = need_W and self.V is None
        V_buf = take(xp, 16 * C * nb * th * tw, dt) if redo else None
        tmp_buf = take(xp, 16 * C * nb * th * tw, dt) if redo else None
        for n0, n1 in self.chunks:
            T = (n1 - n0) * th * tw
            gyt = self._gather(xp, gy[n0:n1], gyt_buf)
            if need_b:
                gb += gyt.reshape(4, OC, T).sum(axis=2).sum(axis=0)
            if not (need_x or need_W):
                continue
            Mg = Mg_buf[:16 * OC * T].reshape(16, OC, T)
            xp.matmul(_kron(xp, "output_T", dt), gyt.reshape(4, OC * T),
                      out=Mg.reshape(16, OC * T))
            if need_W:
                if redo:
                    V = V_buf[:16 * C * T].reshape(16, C, T)
                    self._input_transform(xp, x[n0:n1], V, tmp_buf)
                else:
                    V = self._chunk_V(n0, n1)
                gU += xp.matmul(Mg, V.transpose(0, 2, 1))
            if need_x:
                gV = xp.matmul(self.U.transpose(0, 2, 1), Mg,
                               out=gV_buf[:16 * C * T].reshape(16, C, T))
                self._overlap_add(xp, gV, gd_buf, gx[n0:n1])
        self.ws.give(gyt_buf, Mg_buf, gV_buf, gd_buf, V_buf, tmp_buf)
        gW = None
        if need_W:
            gW = xp.matmul(_kron(xp, "filter_T", dt), gU.reshape(16, OC * C))  # (9, OC*C)
            gW = xp.ascontiguousarray(gW.T).reshape(OC, C, 3, 3)
        self.release()
        return gx, gW, gb

    def _gather(self, xp, gy, gyt_buf):
        """gyt (2, 2, OC, n, th, tw): gy (n, OC, OH, OW) by 2x2 output block, zero where a
        block sticks out of an odd-sized output."""
        N, C, H, Wd, OC, ph, pw, OH, OW, th, tw, Hp, Wp = self.geom
        n = gy.shape[0]
        gyt = gyt_buf[:4 * OC * n * th * tw].reshape(2, 2, OC, n, th, tw)
        if OH % 2 or OW % 2:
            gyt.fill(0)

        def images(lo, hi):
            for blocks, plane in self._block_planes(gyt, gy, lo, hi):
                xp.copyto(blocks, plane)

        parallel_for(n, images, nbytes=gy.nbytes, like=gy)
        return gyt

    def _overlap_add(self, xp, gV, tmp_buf, gx):
        """gx (n, C, H, W): the tile gradients B gV B^T of gV (16, C, T) added onto the
        padded plane (tiles of one tap never overlap, so ``+=`` is exact), cropped.  B's
        first and last columns are +-unit vectors, so half the transformed rows are gV's own
        (with a sign); the others go through ``tmp_buf``.  Channels in parallel."""
        N, C, H, Wd, OC, ph, pw, OH, OW, th, tw, Hp, Wp = self.geom
        n = gV.shape[2] // (th * tw)
        gpad = self.ws.take(xp, (C, n, Hp, Wp), gV.dtype)
        g4 = gV.reshape(4, 4, C, n, th, tw)
        tmp = tmp_buf[:gV.size].reshape(4, 4, C, n, th, tw)

        def channels(lo, hi):
            g = gpad[lo:hi]
            g.fill(0)
            rows = _b_rows(xp, g4[:, :, lo:hi], tmp[0:2, :, lo:hi])
            for i, (r, si) in enumerate(rows):
                cols = _b_rows(xp, r, tmp[2 + i // 2, 2 * (i % 2):2 * (i % 2) + 2, lo:hi])
                for j, (v, sj) in enumerate(cols):
                    dst = g[:, :, i:i + 2 * th:2, j:j + 2 * tw:2]
                    if si * sj > 0:
                        dst += v
                    else:
                        dst -= v
            xp.copyto(gx[:, lo:hi], g[:, :, ph:ph + H, pw:pw + Wd].transpose(1, 0, 2, 3))

        parallel_for(C, channels, nbytes=gV.nbytes, like=gV)
        self.ws.give(gpad)

    def release(self) -> None:
        self.ws.give(self.V)
        self.V = self.U = None


def _bt_rows(xp, d, out):
    """out[k] = sum_i B^T[k, i] d[i] over the first axis of d (4, ...)."""
    xp.subtract(d[0], d[2], out=out[0])
    xp.add(d[1], d[2], out=out[1])
    xp.subtract(d[2], d[1], out=out[2])
    xp.subtract(d[1], d[3], out=out[3])


def _b_rows(xp, g, tmp):
    """sum_k B^T[k, i] g[k] over the first axis of g (4, ...), for i = 0..3, as (array, sign)
    pairs: rows 0 and 3 are g[0] and -g[3] (no op), rows 1 and 2 are computed into tmp[0]
    and tmp[1]."""
    xp.subtract(g[1], g[2], out=tmp[0])
    tmp[0] += g[3]
    xp.add(g[1], g[2], out=tmp[1])
    tmp[1] -= g[0]
    return [(g[0], 1), (tmp[0], 1), (tmp[1], 1), (g[3], -1)]
