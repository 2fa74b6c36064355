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
    """One conv2d call through F(2x2, 3x3): ``forward``, then ``backward`` (again, as often as
    asked, until ``release`` gives the kept buffers back).  Scratch arrays come from
    ``workspace``; a chunk's largest product buffer takes about ``chunk_bytes`` (None:
    tuning.WINOGRAD_CHUNK_BYTES).

    Its steps are public for an op that works on the output's 2x2 blocks itself (the fused
    conv -> batch norm -> pool kernel): :meth:`filter_transform`, then per chunk
    :meth:`forward_blocks`; in backward, per chunk :meth:`backward_blocks` from the chunk's
    gradient in blocks, then :meth:`weight_gradient`."""

    def V_bytes(self) -> int:
        """Bytes of the transformed input tiles V of the whole batch (kept for gW)."""
        g = self.geom
        return 16 * g.C * g.N * g.th * g.tw * self.itemsize

    def _chunk_V(self, n0, n1):
        """Chunk n0:n1's (16, T, C) slot in the kept V (chunk after chunk in one buffer)."""
        C, T = self.geom.C, self.geom.th * self.geom.tw
        return self.V[16 * C * n0 * T:16 * C * n1 * T].reshape(16, -1, C)

    # -- forward ------------------------------------------------------------------------------
    def filter_transform(self, xp, W, keep_V):
        """U (16, OC, C) = G g G^T for every (filter, channel) of W (OC, C, 3, 3): W's 9 taps
        as rows.  With ``keep_V`` the buffer of the whole batch's V is taken (for gW)."""
        OC, C = self.geom.OC, self.geom.C
        dt = W.dtype
        if keep_V:
            self.V = self.ws.take(xp, 16 * C * self.geom.N * self.geom.th * self.geom.tw, dt)
        return xp.matmul(kron(xp, "filter", dt), W.reshape(OC * C, 9).T).reshape(16, OC, C)

    def forward_blocks(self, xp, x, n0, n1, Ut, yt):
        """Images n0:n1 of x through the transforms and products into their output blocks,
        written into the flat ``yt`` (4*OC*T elements) and returned as (2, 2, th, tw, n, OC);
        V goes to the kept buffer when there is one.  ``Ut`` is U (16, OC, C) transposed."""
        N, C, H, Wd, OC, ph, pw, OH, OW, th, tw, Hp, Wp = self.geom
        dt, take = x.dtype, self.ws.take
        n = n1 - n0
        T = n * th * tw
        keep_V = self.V is not None
        scratch_V = None if keep_V else take(xp, 16 * C * T, dt)
        M_buf = take(xp, 16 * OC * T, dt)
        V = self._chunk_V(n0, n1) if keep_V else scratch_V.reshape(16, T, C)
        self._input_transform(xp, x[n0:n1], V)
        M = products(xp, V, Ut, M_buf.reshape(16, T, OC))
        xp.matmul(kron(xp, "output", dt), M.reshape(16, T * OC), out=yt.reshape(4, -1))
        self.ws.give(scratch_V, M_buf)
        return yt.reshape(2, 2, th, tw, n, OC)

    def forward(self, xp, x, W, b, keep_V, keep_U):
        """y (N, OC, OH, OW) = conv2d(x, W, b, padding); keeps V (for gW) and U (for gx) as
        asked."""
        N, C, H, Wd, OC, ph, pw, OH, OW, th, tw, Hp, Wp = self.geom
        dt = x.dtype
        U = self.filter_transform(xp, W, keep_V)
        Ut = U.transpose(0, 2, 1)
        y = xp.empty((N, OC, OH, OW), dtype=dt)

        def chunk(k, n0, n1):
            yt = self.ws.take(xp, 4 * OC * (n1 - n0) * th * tw, dt)
            self._scatter(xp, self.forward_blocks(xp, x, n0, n1, Ut, yt), y[n0:n1], b)
            self.ws.give(yt)

        self._each_chunk(chunk, nbytes=N * OC * OH * OW * self.itemsize, like=x)
        self.U = U if keep_U else None
        return y

    # -- backward -----------------------------------------------------------------------------
    def backward_blocks(self, xp, x, n0, n1, gyt, need_x, need_W, gx):
        """Images n0:n1's part of backward from their output gradient ``gyt`` in 2x2 blocks
        (2, 2, th, tw, n, OC): gx[n0:n1] filled when ``need_x``; returns the chunk's gU
        (16, OC, C) when ``need_W`` (V made again from x when forward did not keep it)."""
        N, C, H, Wd, OC, ph, pw, OH, OW, th, tw, Hp, Wp = self.geom
        dt, take = x.dtype, self.ws.take
        T = (n1 - n0) * th * tw
        Mg = take(xp, 16 * OC * T, dt).reshape(16, T, OC)
        xp.matmul(kron(xp, "output_T", dt), gyt.reshape(4, T * OC), out=Mg.reshape(16, T * OC))
        V_buf = gU = None
        if need_W:
            if self.V is None:
                V_buf = take(xp, 16 * C * T, dt)
                V = V_buf.reshape(16, T, C)
                self._input_transform(xp, x[n0:n1], V)
            else:
                V = self._chunk_V(n0, n1)
            gU = products(xp, Mg.transpose(0, 2, 1), V, xp.empty((16, OC, C), dtype=dt))
        if need_x:
            gV_buf = take(xp, 16 * C * T, dt)
            gV = products(xp, Mg, self.U, gV_buf.reshape(16, T, C))
            self._overlap_add(xp, gV, gx[n0:n1])
            self.ws.give(gV_buf)
        self.ws.give(Mg, V_buf)
        return gU

    def weight_gradient(self, xp, gU_parts, dtype):
        """gW (OC, C, 3, 3) = G^T gU G from the chunks' gU parts, added in chunk order."""
        OC, C = self.geom.OC, self.geom.C
        gU = sum_in_order(gU_parts)
        gW = xp.matmul(kron(xp, "filter_T", dtype), gU.reshape(16, OC * C))  # (9, OC*C)
        return xp.ascontiguousarray(gW.T).reshape(OC, C, 3, 3)

    def backward(self, xp, gy, x, need_x, need_W, need_b):
        """(gx, gW, gb) for gy (N, OC, OH, OW), each None when not asked.  gW and gb are
        summed chunk after chunk, in order (the same sums from run to run).  x is
        the forward's input: V is made again from it, chunk by chunk, when forward did not
        keep it."""
        N, C, H, Wd, OC, ph, pw, OH, OW, th, tw, Hp, Wp = self.geom
        dt = x.dtype
        gx = xp.empty(self.x_shape, dtype=dt) if need_x else None
        gU_parts = [None] * len(self.chunks)   # each chunk's sum, added in order below

        def chunk(k, n0, n1):
            gyt_buf = self.ws.take(xp, 4 * OC * (n1 - n0) * th * tw, dt)
            gyt = self._gather(xp, gy[n0:n1], gyt_buf)
            gU_parts[k] = self.backward_blocks(xp, x, n0, n1, gyt, need_x, need_W, gx)
            self.ws.give(gyt_buf)

        if need_x or need_W:
            self._each_chunk(chunk, nbytes=N * OC * OH * OW * self.itemsize, like=x)
        gb = None
        if need_b:
            gb = xp.zeros(OC, dtype=dt)
            for n0, n1 in self.chunks:
                gb += gy[n0:n1].sum(axis=(0, 2, 3))
        gW = self.weight_gradient(xp, gU_parts, dt) if need_W else None
        # V and U stay for another backward (retain_graph); release() gives them back, which
        # autograd calls right after this backward when the graph is freed
        return gx, gW, gb

    def release(self) -> None:
        """Gives the kept V back to the workspace and drops U (after the last backward)."""
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
         priority=31, summary="Winograd F(2x2, 3x3): 16 tile products, 4/9 of im2col's "
                                      "multiplies")(WinogradConv)
