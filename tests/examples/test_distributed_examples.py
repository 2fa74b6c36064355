"""The training examples under ``mpiexec -n 2`` (data-parallel with no other change) and
resumed with ``--resume``."""
from __future__ import annotations

import pathlib

import numpy as np
import pytest

from minidl.data import DataLoader
from minidl.serialization import load_checkpoint

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_mnist_cnn_trains_on_two_processes(data_dir, tmp_path, run_python):
    proc = run_python(ROOT / "examples" / "mnist_cnn.py", "--limit", "512", "--epochs", "1",
                      "--quiet", "--target-acc", "0.3", "--out", tmp_path / "run", ranks=2,
                      MINIDL_DATA=str(data_dir))
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("running on 2 processes, data-parallel over MPI")
    verdicts = [line for line in lines if line.startswith("test accuracy") and "(target" in line]
    assert len(verdicts) == 1   # rank 0 only
    assert {"best.npz", "last.npz", "curves.png"} <= {p.name for p in (tmp_path / "run")
                                                      .iterdir()}
    state = load_checkpoint(tmp_path / "run" / "last.npz")
    assert array_to_world(state) == 2
    assert int(state["optimizer"]["step_count"]) == 4     # 512 / 128: global batches


def array_to_world(state):
    from minidl.serialization import array_to_json
    return array_to_json(state["fit"]["meta"])["world_size"]


def test_an_interrupted_example_resumes_to_the_same_weights(data_dir, tmp_path, monkeypatch,
                                                            load_example, capsys):
    mlp = load_example("mnist_mlp")
    base = ["--limit", "640", "--epochs", "2", "--batch-size", "64", "--quiet",
            "--target-acc", "0", "--save-every", "3"]
    assert mlp.main(base + ["--out", str(tmp_path / "full")]) == 0
    assert capsys.readouterr().out.startswith("running on 1 process")

    real, calls = DataLoader._make_batch, []

    def interrupted(self, *a):
        if self.shuffle:   # the training loader: stop in batch 14 of 20 (epoch 2)
            calls.append(1)
            if len(calls) == 14:
                raise KeyboardInterrupt
        return real(self, *a)
    monkeypatch.setattr(DataLoader, "_make_batch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        mlp.main(base + ["--out", str(tmp_path / "cut")])
    monkeypatch.setattr(DataLoader, "_make_batch", real)
    saved = load_checkpoint(tmp_path / "cut" / "last.npz")
    # 10 batches an epoch, a save every 3 in it: after batch 3 of epoch 2, step 13
    assert int(saved["optimizer"]["step_count"]) == 13
    assert mlp.main(base + ["--out", str(tmp_path / "cut"), "--resume",
                            str(tmp_path / "cut" / "last.npz")]) == 0
    assert "mid-epoch 2, optimizer step 13" in capsys.readouterr().out
    full = load_checkpoint(tmp_path / "full" / "last.npz")
    resumed = load_checkpoint(tmp_path / "cut" / "last.npz")
    for key, value in full["model"].items():
        np.testing.assert_array_equal(resumed["model"][key], value, err_msg=key)
