"""SyncBatchNorm2d and SyncBatchNorm1d, one training forward + backward and one eval forward
on this rank's share of a fixed batch (rank 0: 5 images, rank 1: 3) or on all 8 alone; rank 0
writes the outputs and input gradients (concatenated over ranks), gamma's and beta's gradients
(summed over ranks) and the running statistics to OUT.npz.  Usage: sync_bn.py OUT.npz"""
import sys

import numpy as np
from mpi4py import MPI

from common import setup
from minidl import distributed
from minidl.autograd import Tensor
from minidl.distributed.sync_batchnorm import convert_sync_batchnorm
from minidl.layers import BatchNorm1d, BatchNorm2d

setup()
r, n = distributed.rank(), distributed.world_size()
rng = np.random.default_rng(5)
cuts = [0, 8] if n == 1 else [0, 5, 8]
out = {"world": np.array(n)}
for name, layer, shape in (("2d", BatchNorm2d(3, momentum=0.3), (8, 3, 4, 5)),
                           ("1d", BatchNorm1d(6), (8, 6))):
    x = rng.standard_normal(shape) * 3 + 1.5
    gy = rng.standard_normal(shape)
    layer.gamma.data[...] = rng.uniform(0.5, 2, shape[1])
    layer.beta.data[...] = rng.standard_normal(shape[1])
    bn = convert_sync_batchnorm(layer)
    xs = Tensor(x[cuts[r]:cuts[r + 1]].copy(), requires_grad=True)
    y = bn(xs)
    y.backward(gy[cuts[r]:cuts[r + 1]])
    bn.eval()
    z = bn(Tensor(x[cuts[r]:cuts[r + 1]]))
    comm = MPI.COMM_WORLD
    parts = {"y": y.data, "gx": xs.grad, "eval": z.data}
    sums = {"ggamma": bn.gamma.grad, "gbeta": bn.beta.grad}
    for key, value in parts.items():
        out[f"{name}.{key}"] = np.concatenate(comm.allgather(value))
    for key, value in sums.items():
        out[f"{name}.{key}"] = sum(comm.allgather(value))
    for key in ("running_mean", "running_var"):
        mine = getattr(bn, key)
        every = comm.allgather(mine)
        assert all(np.array_equal(e, mine) for e in every), f"{key} differs between ranks"
        out[f"{name}.{key}"] = mine
if r == 0:
    np.savez(sys.argv[1], **out)
