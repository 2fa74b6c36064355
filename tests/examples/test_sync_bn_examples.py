"""``--sync-bn`` in the CNN examples: under ``mpiexec -n 2`` the model's batch norms become
SyncBatchNorm (left unfused); in one process the flag only says it does nothing; without the
flag nothing changes."""
from __future__ import annotations

import argparse
import pathlib

import pytest

from minidl.layers import BatchNorm2d

ROOT = pathlib.Path(__file__).resolve().parents[2]


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


def test_mnist_cnn_with_sync_bn_trains_on_two_processes(data_dir, tmp_path, run_python):
    proc = run_python(ROOT / "examples" / "mnist_cnn.py", "--sync-bn", "--limit", "512",
                      "--epochs", "1", "--quiet", "--target-acc", "0.3", "--out",
                      tmp_path / "run", ranks=2, timeout=180, MINIDL_DATA=str(data_dir))
    out = proc.stdout
    assert out.count("--sync-bn: batch-norm statistics over the global batch of 2 processes") \
        == 1, out   # rank 0 only
    assert "test accuracy" in out and (tmp_path / "run" / "best.npz").exists()
