"""Synchronised batch-norm layers and the model conversion.

Under data parallelism each rank sees only its share of every batch, so a plain BatchNorm
normalises with the statistics of, say, 64 images while one process would use 128.
:class:`SyncBatchNorm1d` / :class:`SyncBatchNorm2d` normalise with the statistics of the
global batch (:func:`minidl.functions.sync_batch_norm.sync_batch_norm`: two small allreduces
in forward, one in backward), so N ranks of B/N images take the same steps as one process of B
(tests/minidl/test_distributed.py).  ::

    model = build_model()
    model = convert_sync_batchnorm(model)     # every BatchNorm1d/2d -> SyncBatchNorm1d/2d
    fit(model, DataLoader(..., shard=True), ...)

They are BatchNorm1d / BatchNorm2d subclasses with the same parameters, buffers and
``state_dict`` keys: a checkpoint saved from either loads into the other.  In a one-process
world they compute exactly what BatchNorm with its reference passes computes.  ``minidl.fuse``
leaves them alone (a fused op would compute per-rank statistics): fusion takes only exact
BatchNorm2d layers.

This module sits with the layers (layer 4 in tests/minidl/test_layering.py), above the rest of
:mod:`minidl.distributed`, and is therefore not imported by ``minidl.distributed`` itself:
``from minidl.distributed.sync_batchnorm import convert_sync_batchnorm``.
"""
from __future__ import annotations

from collections import OrderedDict
from functools import partial

from minidl.functions.sync_batch_norm import sync_batch_norm
from minidl.layers.fused import Absorbed, Fused
from minidl.layers.module import Module
from minidl.layers.normalization import BatchNorm1d, BatchNorm2d, _BatchNorm

__all__ = ["SyncBatchNorm1d", "SyncBatchNorm2d", "convert_sync_batchnorm"]


class _SyncBatchNorm(_BatchNorm):
    """``forward`` normalises with the global batch's statistics when training (the running
    ones in eval mode, like BatchNorm); ``comm``: a Communicator, or None for the world's."""

    comm = None

    def forward(self, x):
        return self.normalise(x, partial(sync_batch_norm, comm=self.comm))


class SyncBatchNorm1d(_SyncBatchNorm, BatchNorm1d):
    """BatchNorm1d over the global batch of all ranks: (N_r, C) or (N_r, C, L) per rank."""


class SyncBatchNorm2d(_SyncBatchNorm, BatchNorm2d):
    """BatchNorm2d over the global batch of all ranks: (N_r, C, H, W) per rank."""


_SYNC = {BatchNorm1d: SyncBatchNorm1d, BatchNorm2d: SyncBatchNorm2d}


def _as_sync(bn, comm):
    """A Sync twin of ``bn`` holding the same Parameter objects, buffer arrays and settings."""
    sync = _SYNC[type(bn)].__new__(_SYNC[type(bn)])
    for key, value in vars(bn).items():
        if isinstance(value, OrderedDict):     # its own tables, holding the same objects
            value = OrderedDict(value)
        object.__setattr__(sync, key, value)
    object.__setattr__(sync, "comm", comm)
    return sync


def convert_sync_batchnorm(model: Module, comm=None) -> Module:
    """Replace every BatchNorm1d / BatchNorm2d in ``model`` (exactly those classes: a subclass
    may have its own ``forward``) by a SyncBatchNorm1d / SyncBatchNorm2d sharing its Parameter
    objects and buffer arrays, in place; returns the model (the new layer when ``model`` is
    itself a BatchNorm).  Parameter order and ``state_dict`` keys do not change, so an
    optimizer built before the conversion still updates the same parameters.

    ``comm``: the Communicator the layers reduce over (None: the world's).  Convert before
    ``minidl.fuse``: a fused batch norm runs its own op, and is refused here."""
    if not isinstance(model, Module):
        raise TypeError(f"convert_sync_batchnorm: model must be a Module, got "
                        f"{type(model).__name__}")
    if type(model) in _SYNC:
        return _as_sync(model, comm)
    for prefix, module in list(model.named_modules()):
        if isinstance(module, (Fused, Absorbed)) and \
                any(isinstance(layer, _BatchNorm) for layer in module.layers):
            raise ValueError(
                f"convert_sync_batchnorm: {prefix or 'the model'} is a fused "
                f"{type(module).__name__} holding a batch norm; call convert_sync_batchnorm "
                f"before minidl.fuse (a fused batch norm cannot be synchronised)")
        for name, child in list(module._modules.items()):
            if type(child) in _SYNC:
                module.set_submodule(name, _as_sync(child, comm))
    return model
