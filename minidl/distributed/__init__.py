"""Data-parallel training across processes and machines on MPI (NCCL between GPUs).

Launch any training script with ``mpiexec -n 4 python train.py`` (or ``srun``); without a
launcher everything here is a one-process no-op, and ``import minidl`` never imports mpi4py.
See docs/distributed.md.

- World: :func:`init`, :func:`rank`, :func:`world_size`, :func:`local_rank`, :func:`is_main`,
  :func:`barrier`, :func:`abort` (minidl.distributed.world).
- Collectives on arrays of any backend, bucketed: :func:`allreduce_mean_`,
  :func:`allreduce_sum_`, :func:`broadcast_`; communicators MPI (host staging), NCCL, single
  (minidl.distributed.comm).
- Overlap: :class:`Reducer` averages gradients bucket by bucket while backward runs
  (minidl.distributed.reducer); communicators start sums with ``iallreduce_sum_``.
- Data parallelism: :func:`broadcast_model`, :func:`check_same_model`,
  :func:`average_gradients`, :func:`allreduce_host` (minidl.distributed.data_parallel).
"""
from minidl.distributed.comm import (  # noqa: F401
    BUCKET_BYTES, Communicator, MPICommunicator, NCCLCommunicator, SingleCommunicator, Work,
    allreduce_mean_, allreduce_sum_, broadcast_, get_communicator, set_communicator,
)
from minidl.distributed.data_parallel import (  # noqa: F401
    ModelMismatchError, all_equal, allreduce_host, average_gradients, broadcast_model,
    check_same_model,
)
from minidl.distributed.reducer import FIRST_BUCKET_BYTES, Reducer  # noqa: F401
from minidl.distributed.world import (  # noqa: F401
    MPIUnavailableError, abort, barrier, init, is_initialized, is_main, launched_size,
    local_rank, mpi_comm, rank, world_size,
)
