"""Under ``mpiexec -n 2``: average the same per-rank gradients with the blocking
``average_gradients`` and with the overlapped ``Reducer`` (buckets started during backward),
the mean and the weighted sum of an uneven batch: on NumPy through MPI ``Iallreduce`` (polled
by the reducer's progress thread, and from the gradient hooks only), on the
strict backend through MPI with host staging and through NCCL over a fake NCCL.  Rank 0 writes
every result to OUT.npz, rank 1 its local gradients to OUT.npz.rank1.npz.
Usage: reducer_vs_blocking.py OUT.npz"""
import sys

import numpy as np

from common import mlp, setup
from nccl_vs_mpi import FakeNccl
import minidl
from minidl import distributed
from minidl.distributed import MPICommunicator, NCCLCommunicator, Reducer
from minidl.functions import softmax_cross_entropy


class Counting:
    """Wraps a communicator: counts the nonblocking sums started so far."""

    def __init__(self, comm):
        self.comm, self.started = comm, 0
        self.size, self.name = comm.size, comm.name

    def allreduce_sum_(self, buf):
        self.comm.allreduce_sum_(buf)

    def iallreduce_sum_(self, buf):
        self.started += 1
        return self.comm.iallreduce_sum_(buf)


def backward(model, x, y):
    for p in model.parameters():
        p.grad = None
    softmax_cross_entropy(model(x), y).backward()


def main():
    out = sys.argv[1]
    rank = distributed.rank()
    results, local = {}, None
    for backend in ("numpy", "strict"):
        minidl.use_backend(backend)
        setup(seed=0)
        model = mlp()
        x = minidl.tensor(np.random.default_rng(rank).standard_normal((16, 20)))
        y = minidl.to_device(np.arange(16) % 4)
        comms = {"mpi": MPICommunicator}
        if backend == "numpy":   # MPI tested from the gradient hooks instead of a thread
            comms["mpi-hooks"] = MPICommunicator
        else:
            fake = FakeNccl(distributed.mpi_comm())
            nccl = NCCLCommunicator(nccl=fake, pointer=fake.pointer, stream=lambda: 0)
            comms["nccl"] = lambda: nccl
        for cname, make in comms.items():
            for wname, weight in (("mean", None), ("weighted", (0.625, 0.375)[rank])):
                backward(model, x, y)
                if local is None:
                    local = [minidl.to_host(p.grad).copy() for p in model.parameters()]
                distributed.average_gradients(model.parameters(), weight, comm=make(),
                                              bucket_bytes=4096)
                blocking = [minidl.to_host(p.grad) for p in model.parameters()]
                comm = Counting(make())
                reducer = Reducer(model.parameters(), comm=comm, bucket_bytes=4096,
                                  first_bucket_bytes=1024,
                                  progress="hooks" if cname.endswith("hooks") else "auto")
                reducer.prepare(weight)
                backward(model, x, y)
                during = comm.started
                reducer.finish()
                reducer.remove()
                assert type(model.parameters()[0].grad).__module__.split(".")[0] == \
                    ("numpy" if backend == "numpy" else "minidl"), "left the device"
                key = f"{backend}.{cname}.{wname}"
                results[key + ".during"] = np.array([during, len(reducer.buckets)])
                for i, p in enumerate(model.parameters()):
                    results[f"{key}.blocking{i}"] = blocking[i]
                    results[f"{key}.overlap{i}"] = minidl.to_host(p.grad)
    np.savez(out if rank == 0 else out + ".rank1.npz",
             **results, **{f"local{i}": a for i, a in enumerate(local)})


if __name__ == "__main__":
    main()
