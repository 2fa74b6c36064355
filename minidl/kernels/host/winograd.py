"""3x3 stride-1 convolution by Winograd's minimal filtering F(2x2, 3x3) (Lavin & Gray, "Fast
Algorithms for Convolutional Neural Networks", CVPR 2016): conv2d's kernel "winograd" on the host
(``winograd_stacked`` runs 5x5 layers with stride 1 or 2 through it as a stack of 3x3 pieces).

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

The transforms and the tile layout are in :mod:`minidl.kernels.host.winograd_transforms`.  The
batch goes through in chunks of a few images (tuning.WINOGRAD_CHUNK_BYTES), whole chunks side
by side on a multi-core CPU.  V is kept, chunk after chunk, for gW (made again from x in
backward beyond CONV_KEEP_COL_BYTES) and U for gx; gW adds the chunks' parts in chunk order.
Measurements: docs/design/conv.md.  Protocol of the kernel: see
:mod:`minidl.kernels.host.conv_columns`.
"""
from __future__ import annotations

from minidl.kernels import tuning
from minidl.kernels.host.conv_common import WORKSPACE, winograd_verdict
from minidl.kernels.host.winograd_transforms import WinogradTiles, kron, products
from minidl.kernels.registry import register
from minidl.parallel import sum_in_order

__all__ = ["Winograd3x3", "WinogradConv"]


class Winograd3x3(WinogradTiles):
    """One conv2d call through F(2x2, 3x3): ``forward``, then at most one ``backward``;
    ``release`` gives the kept buffers back.  Scratch arrays come from ``workspace``; a chunk's
    largest product buffer takes about ``chunk_bytes`` (None: tuning.WINOGRAD_CHUNK_BYTES).

    ``blocks``, when given to forward and backward, keeps the output in its 2x2 blocks (for an
    op that works on them, :class:`minidl.functions.conv_bn_pool.ConvBatchNormMaxPool`); it
    has three methods, each called in chunk k's thread:

    * ``slot(k)``: a flat buffer of 4*OC*T elements for chunk k's output blocks;
    * ``done(k, yt)``: chunk k's blocks yt (2, 2, th, tw, n, OC) are in that slot;
    * ``gradient(k, out)``: write chunk k's output gradient, in the same blocks, into out
      (2, 2, th, tw, n, OC) and return it."""

    def V_bytes(self) -> int:
        """Bytes of the transformed input tiles V of the whole batch (kept for gW)."""
        N, C, H, Wd, OC, ph, pw, OH, OW, th, tw, Hp, Wp = self.geom
        return 16 * C * N * th * tw * self.itemsize

    def _chunk_V(self, n0, n1):
        """Chunk n0:n1's (16, T, C) slot in the kept V (chunk after chunk in one buffer)."""
        N, C, H, Wd, OC, ph, pw, OH, OW, th, tw, Hp, Wp = self.geom
        return self.V[16 * C * n0 * th * tw:16 * C * n1 * th * tw].reshape(16, -1, C)

    # -- forward ------------------------------------------------------------------------------
    def forward(self, xp, x, W, b, keep_V, keep_U, blocks=None):
        """y (N, OC, OH, OW) = conv2d(x, W, b, padding); keeps V (for gW) and U (for gx) as
        asked.  With ``blocks`` (see the class docstring) the output stays in 2x2 blocks: each
        chunk's go to ``blocks.done`` and forward returns None (b must be None)."""
        N, C, H, Wd, OC, ph, pw, OH, OW, th, tw, Hp, Wp = self.geom
        dt, take = x.dtype, self.ws.take
        # U (16, OC, C) = G g G^T for every (filter, channel): W's 9 taps as rows
        U = xp.matmul(kron(xp, "filter", dt), W.reshape(OC * C, 9).T).reshape(16, OC, C)
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
            M = products(xp, V, Ut, M_buf.reshape(16, T, OC))
            xp.matmul(kron(xp, "output", dt), M.reshape(16, T * OC), out=yt.reshape(4, -1))
            if blocks is None:
                self._scatter(xp, yt.reshape(2, 2, th, tw, n, OC), y[n0:n1], b)
                self.ws.give(yt)
            else:
                blocks.done(k, yt.reshape(2, 2, th, tw, n, OC))
            self.ws.give(scratch_V, M_buf)

        self._each_chunk(chunk, nbytes=N * OC * OH * OW * self.itemsize, like=x)
        self.U = U if keep_U else None
        return y


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
            xp.matmul(kron(xp, "output_T", dt), gyt.reshape(4, T * OC),
                      out=Mg.reshape(16, T * OC))
            V_buf = None
            if need_W:
                if redo:
                    V_buf = take(xp, 16 * C * T, dt)
                    V = V_buf.reshape(16, T, C)
                    self._input_transform(xp, x[n0:n1], V)
                else:
                    V = self._chunk_V(n0, n1)
                gU_parts[k] = products(xp, Mg.transpose(0, 2, 1), V,
                                        xp.empty((16, OC, C), dtype=dt))
            if need_x:
                gV_buf = take(xp, 16 * C * T, dt)
                gV = products(xp, Mg, self.U, gV_buf.reshape(16, T, C))
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
            gW = xp.matmul(kron(xp, "filter_T", dt), gU.reshape(16, OC * C))  # (9, OC*C)
            gW = xp.ascontiguousarray(gW.T).reshape(OC, C, 3, 3)
        self.release()
        return gx, gW, gb

    def release(self) -> None:
        self.ws.give(self.V)
        self.V = self.U = None



class WinogradConv:
    """conv2d's kernel protocol (see :mod:`minidl.kernels.host.conv_columns`) around
    :class:`Winograd3x3`; ``tiles`` is the Winograd call (its kept V and U)."""

    def __init__(self, g, keep_col=False, recorded=True):
        self.g, self.keep_col, self.recorded = g, keep_col, recorded
        self.tiles = self.make_tiles(g)

    @staticmethod
    def make_tiles(g):
        return Winograd3x3((g.N, g.C, g.H, g.W), (g.OC, g.C, g.KH, g.KW), g.padding, g.dtype,
                           WORKSPACE)

    def forward(self, xp, x, W, b=None):
        keep_V = self.keep_col and self.tiles.V_bytes() <= tuning.CONV_KEEP_COL_BYTES
        return self.tiles.forward(xp, x, W, b, keep_V=keep_V, keep_U=self.recorded)

    def backward(self, xp, gy, x, W, need_x, need_W, need_b):
        return self.tiles.backward(xp, gy, x, need_x, need_W, need_b)

    def release(self) -> None:
        self.tiles.release()


register("conv2d", "winograd", backends=("numpy",), applies=winograd_verdict,
         priority=31)(WinogradConv)
