"""examples/bovw_classify.py under ``mpiexec -n 2``: the SIFT extraction split between the
processes, the vocabulary fitted across them; it prints once and reports the accuracies of
one process."""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

import pytest
from test_bovw_classify_example import FAST, _accuracies, _make

ROOT = pathlib.Path(__file__).resolve().parents[2]
LAUNCH_VARS = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK",
               "SLURM_NTASKS", "SLURM_PROCID", "PMIX_SIZE", "PMIX_RANK")


def _run(args, ranks=None):
    cmd = [sys.executable, str(ROOT / "examples" / "bovw_classify.py"), *map(str, args)]
    if ranks:
        exe = shutil.which("mpiexec") or str(pathlib.Path(sys.executable).parent / "mpiexec")
        if not os.path.exists(exe):
            pytest.skip("mpiexec not found: pip install 'minidl[mpi]' (mpi4py and MPICH)")
        pytest.importorskip("mpi4py", reason="mpi4py not installed: pip install 'minidl[mpi]'")
        cmd = [exe, "-n", str(ranks)] + cmd
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS}
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", MINIDL_BACKEND="numpy")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_two_processes_print_once_and_classify_like_one(images_dir, tmp_path):
    _make(images_dir, tmp_path / "d", {"butterfly": ["butterfly.jpg"],
                                       "other": ["fruits.jpg", "building.jpg"]}, 6)
    two = _run([tmp_path / "d", "--out", tmp_path / "o2"] + FAST, ranks=2)
    one = _run([tmp_path / "d", "--out", tmp_path / "o1"] + FAST)
    assert two.count("photos in 2 classes") == 1 and "(2 processes)" in two
    assert _accuracies(two) == _accuracies(one) and _accuracies(one)["linear"] >= 0.75
    assert (tmp_path / "o2" / "confusion_mlp.png").exists()
