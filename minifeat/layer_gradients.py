"""The gradients of one octave's layers, as SIFT's orientation and descriptor stages read them.

:class:`LayerGradients` keeps one :class:`~minifeat.gradients.GradientSampler` per Gaussian
image of an octave, shared by both stages, and gives a layer's maps back to a workspace once
the layer is described (the next layer reuses them instead of page-faulting fresh memory).
:func:`in_keypoint_chunks` runs a per-keypoint stage on contiguous ranges of a layer's
keypoints side by side on the host threads (:mod:`minidl.parallel`), with the same bits for
any thread count.
"""
from __future__ import annotations

from minidl import backend as B
from minidl import parallel

from .gradients import _WINDOW_DENSE_RATIO, GradientSampler

__all__ = ["LayerGradients", "in_keypoint_chunks"]


class LayerGradients:
    """One gradient sampler per Gaussian image of one octave, shared by orientation and
    descriptors; :meth:`free` drops a layer's once it is described."""

    def __init__(self, octave: int, gaussians, workspace=None):
        self.octave = octave  # OpenCV's numbering: -1 is the upsampled one
        self.gaussians = gaussians
        self.workspace = workspace
        self.maps = {}

    def get(self, layer: int) -> GradientSampler:
        """The sampler of the octave's Gaussian image ``layer`` (made on first use)."""
        if layer not in self.maps:
            ws = _Lease(self.workspace) if self.workspace is not None else None
            self.maps[layer] = (GradientSampler(self.gaussians[layer], workspace=ws), ws)
        return self.maps[layer][0]

    def free(self, layer: int) -> None:
        """Drop the layer's sampler; its maps go back to the workspace for the next layer."""
        _, ws = self.maps.pop(layer, (None, None))
        if ws is not None:
            ws.give_back()


class _Lease:
    """A workspace view that remembers what it handed out, to give it all back at once (a
    sampler's gradient maps, once its layer is described: the next layer reuses them)."""

    def __init__(self, workspace):
        self.workspace = workspace
        self.out = []

    def take(self, xp, shape, dtype):
        a = self.workspace.take(xp, shape, dtype)
        self.out.append(a)
        return a

    def give_back(self):
        self.workspace.give(*self.out)
        self.out = []


def in_keypoint_chunks(fn, grad, n: int, samples: int):
    """``fn(0, n)``, computed as ``fn(lo, hi)`` on contiguous keypoint ranges side by side on
    the host threads (:func:`minidl.parallel.parallel_for`) and concatenated.  ``samples``:
    the gradient window samples the call reads.  The per-keypoint results do not depend on the
    ranges, so any thread count gives the same bits, once the sampler's one choice that does
    (dense maps or sparse reads, whose angles differ in the last bits) is made here, before
    the split, with any thread count: the dense maps are built now when the call would build
    them anyway (in one piece, it would switch once its running count crossed the line)."""
    xp = B.get_array_module(grad.image)
    H, W = grad.shape
    if max(grad.requested + samples, grad.expected) * _WINDOW_DENSE_RATIO > H * W:
        prepare = getattr(grad, "prepare", None)
        if prepare is not None:
            prepare()
        else:
            grad.expect(H * W)  # the choice is dense now; then no windows: builds the maps
            z = xp.zeros(0, xp.int64)
            grad.windows(z, z, 1)
    out = {}

    def work(lo, hi):
        out[lo] = fn(lo, hi)

    # two float32 maps read per window sample
    parallel.parallel_for(n, work, nbytes=int(samples) * 8, like=grad.image)
    if len(out) == 1:
        return out[0]
    return xp.concatenate([out[k] for k in sorted(out)])
