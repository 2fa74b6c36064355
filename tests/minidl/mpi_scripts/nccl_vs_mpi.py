"""Under ``mpiexec -n 2`` and the strict backend: average the same per-rank gradients through
the MPI communicator (host staging) and through the NCCL communicator over a fake NCCL, and
write both results (rank 0) to OUT.npz.  Usage: nccl_vs_mpi.py OUT.npz"""
import os
import sys

import numpy as np

from common import mlp, setup
import minidl
from minidl import distributed
from minidl.distributed import MPICommunicator, NCCLCommunicator


class FakeNccl:
    """``cupy.cuda.nccl``'s API over MPI: device "addresses" are handles to strict arrays; the
    wire is an MPI allreduce of their host copies.  It checks what a real NCCL would need:
    the count and dtype code matching the buffer, the op, one shared unique id."""

    NCCL_INT32, NCCL_INT64, NCCL_FLOAT16, NCCL_FLOAT32, NCCL_FLOAT64 = 2, 4, 6, 7, 8
    NCCL_SUM = 0
    CODES = {"int32": 2, "int64": 4, "float16": 6, "float32": 7, "float64": 8}

    def __init__(self, mpi_comm):
        self.mpi, self.memory, self.calls = mpi_comm, {}, []

    def pointer(self, array):
        address = 0x7F0000000000 + 0x10000 * (len(self.memory) + 1)
        self.memory[address] = array
        return address

    def get_unique_id(self):
        return tuple(os.urandom(128))

    def NcclCommunicator(self, nranks, uid, rank):
        ids = self.mpi.allgather(uid)
        assert all(u == ids[0] for u in ids), "ranks got different NCCL unique ids"
        assert nranks == self.mpi.Get_size() and rank == self.mpi.Get_rank()
        return self

    def allReduce(self, send, recv, count, dtype, op, stream):
        from mpi4py import MPI
        a, out = self.memory.get(send), self.memory.pop(recv)
        assert out is a and count == a.size and dtype == self.CODES[str(a.dtype)], \
            (count, a.size, dtype, a.dtype)
        assert op == self.NCCL_SUM and stream == 0
        host = a.get()
        self.mpi.Allreduce(MPI.IN_PLACE, host, op=MPI.SUM)
        a.set(host)
        self.calls.append(count)


def main():
    out = sys.argv[1]
    minidl.use_backend("strict")
    setup(seed=0)
    model = mlp()
    rank = distributed.rank()
    x = minidl.tensor(np.random.default_rng(rank).standard_normal((16, 20)))
    y = minidl.to_device(np.arange(16) % 4)
    minidl.functions.softmax_cross_entropy(model(x), y).backward()
    grads = [p.grad.copy() for p in model.parameters()]

    distributed.average_gradients(model.parameters(), comm=MPICommunicator(), bucket_bytes=4096)
    via_mpi = [minidl.to_host(p.grad) for p in model.parameters()]
    for p, g in zip(model.parameters(), grads):
        p.grad = g.copy()
    fake = FakeNccl(distributed.mpi_comm())
    nccl = NCCLCommunicator(nccl=fake, pointer=fake.pointer, stream=lambda: 0)
    distributed.average_gradients(model.parameters(), comm=nccl, bucket_bytes=4096)
    via_nccl = [minidl.to_host(p.grad) for p in model.parameters()]
    assert type(model.parameters()[0].grad).__module__.startswith("minidl.testing"), \
        "the gradients left the strict device"
    local = [minidl.to_host(g) for g in grads]
    if rank == 0:
        np.savez(out, **{f"mpi{i}": a for i, a in enumerate(via_mpi)},
                 **{f"nccl{i}": a for i, a in enumerate(via_nccl)},
                 **{f"local{i}": a for i, a in enumerate(local)},
                 buckets=np.array(fake.calls))
    else:
        np.savez(out + ".rank1.npz", **{f"local{i}": a for i, a in enumerate(local)})


if __name__ == "__main__":
    main()
