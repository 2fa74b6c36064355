"""Who am I in the job: MPI launch detection, ``init``, ranks, and ending every rank on an error.

A process is part of a multi-process world when a launcher says so in its environment --
``mpiexec``/``mpirun`` (MPICH's hydra: ``PMI_SIZE``/``PMI_RANK``; Open MPI:
``OMPI_COMM_WORLD_SIZE``/``_RANK``), a PMIx launcher (``PMIX_RANK`` with a size), or Slurm's
``srun`` (``SLURM_NTASKS``/``SLURM_PROCID``) -- or when the program itself already imported
``mpi4py.MPI`` and its ``COMM_WORLD`` has more than one process.  Otherwise the world is one
process and every function here is a cheap no-op: scripts run unchanged, and ``import minidl``
never imports mpi4py (it is an optional extra: ``pip install 'minidl[mpi]'``).
"""
from __future__ import annotations

import os
import sys
import traceback

__all__ = ["init", "is_initialized", "launched_size", "rank", "world_size", "local_rank",
           "is_main", "barrier", "abort", "MPIUnavailableError"]

# (size variable, rank variable, local rank variable) per launcher, most specific first
_LAUNCHERS = (
    ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_LOCAL_RANK"),
    ("PMI_SIZE", "PMI_RANK", "MPI_LOCALRANKID"),          # MPICH hydra, Intel MPI
    ("PMIX_SIZE", "PMIX_RANK", "PMIX_LOCAL_RANK"),
    ("SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID"),
)

_state = {"comm": None, "mpi": None, "rank": 0, "size": 1, "local_rank": 0, "local_size": 1,
          "hooked": False}


class MPIUnavailableError(ImportError):
    """The process was launched under MPI but mpi4py cannot be imported."""


def _env_int(name):
    value = os.environ.get(name, "").strip()
    return int(value) if value.isdigit() else None


def launched_size() -> int:
    """The number of processes the launcher's environment announces (1 when none does)."""
    for size_var, rank_var, _ in _LAUNCHERS:
        size = _env_int(size_var)
        if size is not None and _env_int(rank_var) is not None:
            return size
    return 1


def _env_local_rank():
    for size_var, _, local_var in _LAUNCHERS:
        if _env_int(size_var) is not None and _env_int(local_var) is not None:
            return _env_int(local_var)
    return None


def _import_mpi():
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise MPIUnavailableError(
            f"this process was started by an MPI launcher ({launched_size()} processes) but "
            f"mpi4py cannot be imported: run `pip install 'minidl[mpi]'` (mpi4py and MPICH "
            f"from PyPI), or build mpi4py against the cluster's MPI with `pip install "
            f"--no-binary mpi4py mpi4py`. Import error: {exc}") from exc
    return MPI


def init() -> int:
    """Join the job's world (idempotent); returns the world size.

    Under a launcher this imports mpi4py (initialising MPI), learns this process's rank and
    the rank among the processes on its node (``local_rank``, which picks its GPU), shares
    the node's cores among its processes (:func:`share_cores`), and installs an exception hook that prints the rank's traceback and aborts every rank (see
    :func:`abort`).  Without a launcher it does nothing and the world is one process."""
    if _state["comm"] is not None:
        return _state["size"]
    MPI = None
    if launched_size() > 1:
        MPI = _import_mpi()
    elif "mpi4py.MPI" in sys.modules:   # the program set MPI up itself
        MPI = sys.modules["mpi4py.MPI"]
        if MPI.COMM_WORLD.Get_size() == 1:
            MPI = None
    if MPI is None:
        _state["comm"] = "single"
        return 1
    world = MPI.COMM_WORLD
    node = world.Split_type(MPI.COMM_TYPE_SHARED)   # the processes that share this node
    local, local_size = node.Get_rank(), node.Get_size()
    node.Free()
    env_local = _env_local_rank()
    if env_local is not None:
        local = env_local
    _state.update(comm=world, mpi=MPI, rank=world.Get_rank(), size=world.Get_size(),
                  local_rank=local, local_size=local_size)
    share_cores(local_size)
    _install_excepthook()
    return _state["size"]


THREAD_ENV_VARS = ("MINIDL_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def share_cores(processes_on_node: int) -> int | None:
    """Give each of the ``processes_on_node`` processes of this node its share of the cores
    for host threads (``minidl.parallel`` and OpenBLAS): ``cores // processes_on_node``, at
    least 1.  Without it every rank would start one thread per core, and N ranks on a node
    would run N times as many threads as cores (measured on 2 cores: the MNIST CNN's epoch
    1.6x slower than with one thread each).  Left alone when the user chose a thread count
    (any of :data:`THREAD_ENV_VARS` set).  Returns the threads set, or None."""
    if processes_on_node <= 1 or any(os.environ.get(v) for v in THREAD_ENV_VARS):
        return None
    from minidl import _openblas, parallel

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:   # not on Linux
        cores = os.cpu_count() or 1
    threads = max(1, cores // processes_on_node)
    parallel.set_num_threads(threads)
    _openblas.set_num_threads(threads)
    return threads


def is_initialized() -> bool:
    return _state["comm"] is not None


def mpi_comm():
    """``MPI.COMM_WORLD`` after :func:`init` in a multi-process world, else None."""
    init()
    return None if _state["comm"] == "single" else _state["comm"]


def rank() -> int:
    """This process's index in the world, 0 .. world_size() - 1."""
    init()
    return _state["rank"]


def world_size() -> int:
    """Number of processes in the world (1 when not launched under MPI)."""
    init()
    return _state["size"]


def local_rank() -> int:
    """This process's index among those on its machine (which GPU it uses)."""
    init()
    return _state["local_rank"]


def is_main() -> bool:
    """True on rank 0, the process that prints progress and writes files."""
    return rank() == 0


def barrier() -> None:
    """Wait until every rank gets here (nothing to wait for in a one-process world)."""
    comm = mpi_comm()
    if comm is not None:
        comm.Barrier()


def abort(status: int = 1, message: str | None = None) -> None:
    """End every rank of the job now: print ``message`` (prefixed with this rank) on stderr,
    then ``MPI.COMM_WORLD.Abort(status)``, so that no rank hangs in a collective waiting for
    this one.  In a one-process world it exits with ``status``."""
    if message:
        prefix = f"[rank {rank()}/{world_size()}] " if world_size() > 1 else ""
        print(prefix + message, file=sys.stderr, flush=True)
    comm = mpi_comm()
    if comm is None:
        sys.exit(status)
    sys.stdout.flush()
    comm.Abort(status)


def _install_excepthook() -> None:
    """An uncaught exception on any rank: print it with the rank, then abort the job."""
    if _state["hooked"]:
        return
    previous = sys.excepthook

    def hook(kind, value, tb):
        if issubclass(kind, KeyboardInterrupt):
            return previous(kind, value, tb)
        text = "".join(traceback.format_exception(kind, value, tb)).rstrip()
        abort(1, f"uncaught exception, ending all {world_size()} ranks:\n{text}")

    sys.excepthook = hook
    _state["hooked"] = True
