"""Smoke test of examples/mnist_resnet.py at tiny settings (the 99.5% run is a benchmark)."""
def test_mnist_resnet_runs_at_tiny_settings(data_dir, tmp_path, capsys, load_example):
    args = ["--backend", "numpy", "--epochs", "1", "--batch-size", "50", "--limit", "200",
            "--depth", "8", "--width", "4", "--target-acc", "0", "--quiet",
            "--data-dir", str(data_dir), "--out", str(tmp_path)]
    status = load_example("mnist_resnet").main(args)
    out = capsys.readouterr().out
    assert status == 0
    assert "ResNet-8: " in out and "test accuracy" in out
    assert (tmp_path / "best.npz").is_file()


def test_mnist_resnet_exits_nonzero_when_target_missed(data_dir, tmp_path, capsys, load_example):
    args = ["--epochs", "1", "--batch-size", "50", "--limit", "100", "--depth", "8",
            "--width", "4", "--target-acc", "1.01", "--quiet", "--data-dir", str(data_dir),
            "--out", str(tmp_path)]
    assert load_example("mnist_resnet").main(args) == 1
    assert "MISSED" in capsys.readouterr().out
