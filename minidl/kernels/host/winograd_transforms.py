"""Winograd F(2x2, 3x3)'s transforms and tile layout, shared by conv2d's Winograd kernels
(:mod:`minidl.kernels.host.winograd`, ``winograd_stacked``) and the fused conv -> batch norm ->
pool kernel.  See :mod:`minidl.kernels.host.winograd` for the algorithm.

Layout: the transforms work on tile planes laid out (rows, columns, images, channels), so every
add runs over rows of (images x channels) elements -- thousands, not the 7 tiles of an NCHW
row.  The padded input is copied once into (Hp, Wp, n, C); B^T goes along the tile rows into
(4, th, Wp, n, C), then along the tile columns into V (16, th, tw, n, C), which is the (16, T,
C) operand of the products as it stands.  Backward mirrors it.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy

from minidl import backend as B
from minidl._openblas import one_thread_each
from minidl.kernels import tuning
from minidl.parallel import chunks_side_by_side, even_chunk_size, get_num_threads, parallel_for

__all__ = ["TileGeometry", "WinogradTiles", "kron", "products", "zero_border"]

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


def kron(xp, name, dtype):
    key = (xp.__name__, name, numpy.dtype(dtype))
    if key not in _consts:
        _consts[key] = xp.asarray(numpy.ascontiguousarray(_KRONS[name], dtype=dtype))
    return _consts[key]



class TileGeometry(NamedTuple):
    """A 3x3 stride-1 conv through F(2x2, 3x3): x (N, C, H, W), padding (ph, pw), OC filters,
    output (OH, OW), (th, tw) = (ceil(OH/2), ceil(OW/2)) tiles per image, and the (Hp, Wp) =
    (2*th + 2, 2*tw + 2) padded plane that covers every tile."""
    N: int
    C: int
    H: int
    W: int
    OC: int
    ph: int
    pw: int
    OH: int
    OW: int
    th: int
    tw: int
    Hp: int
    Wp: int


class WinogradTiles:
    """The tile geometry, chunks and transforms of one F(2x2, 3x3) call (the steps that
    :class:`minidl.kernels.host.winograd.Winograd3x3` and the fused op run).  Scratch arrays
    come from ``workspace``; a chunk's largest product buffer takes about ``chunk_bytes``
    (None: tuning.WINOGRAD_CHUNK_BYTES), with at least WINOGRAD_MIN_CHUNK_IMAGES images."""

    def __init__(self, x_shape, W_shape, padding, dtype, workspace, chunk_bytes=None):
        N, C, H, Wd = x_shape
        OC = W_shape[0]
        ph, pw = padding
        OH, OW = H + 2 * ph - 2, Wd + 2 * pw - 2
        th, tw = (OH + 1) // 2, (OW + 1) // 2
        # the padded plane covers every tile: 2*th + 2 >= OH + 2 = H + 2*ph rows
        self.geom = TileGeometry(N, C, H, Wd, OC, ph, pw, OH, OW, th, tw, 2 * th + 2,
                                 2 * tw + 2)
        self.x_shape = tuple(x_shape)  # gx's shape (a subclass's input differs from geom's)
        self.ws, self.itemsize = workspace, numpy.dtype(dtype).itemsize
        per_image = 16 * max(C, OC) * th * tw * self.itemsize
        chunk_bytes = tuning.WINOGRAD_CHUNK_BYTES if chunk_bytes is None else chunk_bytes
        nb = even_chunk_size(N, max(tuning.WINOGRAD_MIN_CHUNK_IMAGES, chunk_bytes // per_image))
        self.chunks = [(n0, min(N, n0 + nb)) for n0 in range(0, N, nb)]
        self.V = self.U = None

    def _planes(self, xp, n, channels, dtype):
        """A scratch (Hp, Wp, n, channels) plane stack whose rows are n+1 images apart: a
        row pitch of a power of two bytes (64 images of 32 channels) would make every
        transposing copy to or from NCHW thrash the cache's sets."""
        Hp, Wp = self.geom.Hp, self.geom.Wp
        buf = self.ws.take(xp, (Hp, Wp, n + 1, channels), dtype)
        return buf, buf[:, :, :n]

    def _each_chunk(self, work, nbytes, like):
        """``work(k, n0, n1)`` for every chunk k of images n0:n1, side by side on a multi-core
        CPU (:func:`minidl.parallel.chunks_side_by_side`)."""
        chunks_side_by_side(len(self.chunks), lambda k: work(k, *self.chunks[k]),
                            nbytes=nbytes, like=like)

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
        H, Wd, ph, pw = self.geom.H, self.geom.W, self.geom.ph, self.geom.pw
        zero_border(p, ph, pw, H, Wd)
        xp.copyto(p[ph:ph + H, pw:pw + Wd], x.transpose(2, 3, 0, 1))

    def _plane_to_gx(self, xp, g, gx):
        """gx (m, C, H, W) = the padded plane g (Hp, Wp, m, C) without its padding."""
        H, Wd, ph, pw = self.geom.H, self.geom.W, self.geom.ph, self.geom.pw
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


def products(xp, a, b, out):
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


def zero_border(p, ph, pw, H, W):
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
