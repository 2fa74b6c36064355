"""``--sync-bn`` in the CNN examples: under ``mpiexec -n 2`` the model's batch norms become
SyncBatchNorm (left unfused); in one process the flag only says it does nothing; without the
flag nothing changes."""
from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from minidl.layers import BatchNorm2d

ROOT = pathlib.Path(__file__).resolve().parents[2]
LAUNCH_VARS = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK",
               "SLURM_NTASKS", "SLURM_PROCID", "PMIX_SIZE", "PMIX_RANK")


def test_one_process_keeps_plain_batch_norm_and_says_so(load_example, capsys):
    cnn = load_example("mnist_cnn")
    model = cnn.build_cnn(width=4)
    assert cnn.maybe_sync_bn(model, argparse.Namespace(sync_bn=True)) is model
    assert "one process, nothing to synchronise" in capsys.readouterr().out
    assert type(model[1]) is BatchNorm2d
    cnn.maybe_sync_bn(model, argparse.Namespace(sync_bn=False))
    assert capsys.readouterr().out == "" and type(model[1]) is BatchNorm2d
    for name in ("mnist_cnn", "fashion_mnist_cnn"):
        with pytest.raises(SystemExit):
            load_example(name).main(["--help"])
        assert "--sync-bn" in capsys.readouterr().out


def test_mnist_cnn_with_sync_bn_trains_on_two_processes(data_dir, tmp_path):
    mpiexec = shutil.which("mpiexec") or str(pathlib.Path(sys.executable).parent / "mpiexec")
    if not os.path.exists(mpiexec):
        pytest.skip("mpiexec not found: pip install 'minidl[mpi]' (mpi4py and MPICH)")
    pytest.importorskip("mpi4py", reason="mpi4py not installed: pip install 'minidl[mpi]'")
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS}
    env.update(PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
               MINIDL_DATA=str(data_dir), OMP_NUM_THREADS="1", MINIDL_BACKEND="numpy")
    cmd = [mpiexec, "-n", "2", sys.executable, str(ROOT / "examples" / "mnist_cnn.py"),
           "--sync-bn", "--limit", "512", "--epochs", "1", "--quiet", "--target-acc", "0.3",
           "--out", str(tmp_path / "run")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert out.count("--sync-bn: batch-norm statistics over the global batch of 2 processes") \
        == 1, out   # rank 0 only
    assert "test accuracy" in out and (tmp_path / "run" / "best.npz").exists()
