"""One test suite, every backend.

Tests that take the ``xp`` fixture (or ``backend``) run once per backend: NumPy, the strict
CuPy stand-in (``minidl.testing.strict``), and real CuPy when a GPU is present (skipped
otherwise, with the reason).  Inside such a test the backend is active, so layers create their
parameters there and ``minidl.to_device`` moves data there.
"""
import importlib.util
import os
import pathlib
import sys

import numpy as np
import pytest

from minidl import backend as B

BACKENDS = ["numpy", "strict", "cupy"]


def _cupy_skip_reason():
    try:
        B._get("cupy")
    except B.BackendUnavailableError as exc:
        return str(exc)
    return None


@pytest.fixture(params=BACKENDS)
def backend(request):
    """The active :class:`minidl.backend.Backend` for this test (parametrized over all)."""
    name = request.param
    if name == "cupy":
        reason = _cupy_skip_reason()
        if reason:
            pytest.skip(f"real CuPy not usable here: {reason}")
    with B.use_backend(name) as b:
        yield b


@pytest.fixture
def xp(backend):
    """The active backend's array namespace (numpy, strict, or cupy)."""
    return backend.xp


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same seeds, the default dtype and the backend it found; a
    test that switches backends for good (an example's ``--backend strict``) cannot leak its
    choice into the next test."""
    active = B.get_backend().name
    B.seed(0)
    B.set_default_dtype(np.float32)
    yield
    B.set_default_dtype(np.float32)
    B.use_backend(active)


@pytest.fixture
def rng():
    """A seeded host Generator for test data."""
    return np.random.default_rng(1234)


def _data_root():
    root = os.environ.get("MINIDL_DATA")
    return pathlib.Path(root) if root else None


@pytest.fixture
def data_dir():
    """The shared data folder (``$MINIDL_DATA``), or a skip with the reason."""
    root = _data_root()
    if root is None or not root.is_dir():
        pytest.skip("real data not available: set MINIDL_DATA to a folder holding mnist/, "
                    "fashion-mnist/ and images/ (CI uses ../shared/data)")
    return root


@pytest.fixture
def images_dir(data_dir):
    d = data_dir / "images"
    if not d.is_dir():
        pytest.skip(f"no images/ folder under MINIDL_DATA={data_dir}")
    return d


EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"


def _load_example(name: str):
    """Import ``examples/<name>.py`` as a module (the examples are scripts, not a package);
    their folder is on ``sys.path`` while it runs, so that they can import ``_cli``."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(EXAMPLES))
    return module


@pytest.fixture
def load_example():
    """``load_example("mnist_cnn")`` -> the example's module, to call its ``main(argv)``."""
    return _load_example


# Variables by which an MPI launcher tells a process it is a rank: a child started by a test
# must not inherit them (it would think it is a rank of a job that does not exist).
MPI_LAUNCH_VARS = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK",
                   "PMIX_SIZE", "PMIX_RANK", "SLURM_NTASKS", "SLURM_PROCID", "MPI_LOCALRANKID",
                   "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "PMIX_LOCAL_RANK")
ROOT = EXAMPLES.parent


def _run_python(script, *args, ranks=None, cwd=None, timeout=120, **env_extra):
    """``python script args`` in a fresh process of this tree, or under ``mpiexec -n ranks``
    (skipped with the install command when mpiexec or mpi4py is missing): NumPy backend, one
    BLAS thread, no launcher variables, ``env_extra`` added.  Fails with the output when the
    process exits non-zero; returns the CompletedProcess."""
    import shutil
    import subprocess

    cmd = [sys.executable, str(script), *map(str, args)]
    if ranks is not None:
        exe = shutil.which("mpiexec") or str(pathlib.Path(sys.executable).parent / "mpiexec")
        if not os.path.exists(exe):
            pytest.skip("mpiexec not found: pip install 'minidl[mpi]' (mpi4py and MPICH)")
        pytest.importorskip("mpi4py", reason="mpi4py not installed: pip install 'minidl[mpi]'")
        cmd = [exe, "-n", str(ranks)] + cmd
    env = {k: v for k, v in os.environ.items() if k not in MPI_LAUNCH_VARS}
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", MINIDL_BACKEND="numpy", **env_extra)
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture
def run_python():
    """``run_python(script, *args, ranks=2, cwd=None, timeout=120, **env)``: see
    :func:`_run_python` (one process, or ``mpiexec -n ranks``)."""
    return _run_python
