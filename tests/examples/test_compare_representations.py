"""Smoke test of examples/compare_representations.py at tiny settings (real data needed)."""
import json

import pytest

from minidl import backend as B

pytestmark = pytest.mark.data


def _tiny(data_dir, tmp_path, *extra):
    return ["--limit", "200", "--epochs", "1", "--vocab-size", "16", "--vocab-images", "50",
            "--quiet", "--data-dir", str(data_dir), "--json", str(tmp_path / "table.json"),
            *extra]


def test_compare_representations_prints_and_writes_the_table(data_dir, tmp_path, capsys, load_example):
    with B.use_backend("numpy"):        # main() switches the backend for good: restore it
        status = load_example("compare_representations").main(_tiny(data_dir, tmp_path, "--no-verdict"))
    out = capsys.readouterr().out
    assert status == 0, out
    table = json.loads((tmp_path / "table.json").read_text())
    names = [r["representation"] for r in table["rows"]]
    assert names == ["pixels + linear", "pixels + MLP", "BoVW dense SIFT + linear",
                     "BoVW dense SIFT + MLP", "CNN (examples/mnist_cnn.py)"]
    dims = {r["representation"]: r["feature_dim"] for r in table["rows"]}
    assert dims["pixels + linear"] == 784
    assert dims["BoVW dense SIFT + linear"] == 16 * (1 + 4)     # K words x (1x1 + 2x2) cells
    assert table["dataset"] == "fashion" and table["train_images"] == 200
    for r in table["rows"]:
        assert 0 <= r["test_accuracy"] <= 1 and r["train_s"] >= 0 and r["inference_s"] >= 0
        assert r["representation"] in out
    assert "BagOfWords(vocab_size=16" in out and "test acc" in out


@pytest.mark.parametrize("backend", ["strict"])
def test_bovw_path_runs_under_strict_backend_on_mnist(data_dir, tmp_path, capsys, backend, load_example):
    """The BoVW path never calls a NumPy-only function on backend arrays; the verdict needs
    the CNN, so running BoVW alone exits 0."""
    with B.use_backend("numpy"):
        args = _tiny(data_dir, tmp_path, "--dataset", "mnist", "--only", "bovw", "--backend",
                     backend, "--limit", "100", "--batch-size", "20")
        args[args.index("--epochs") + 1] = "5"
        status = load_example("compare_representations").main(args)
    assert status == 0
    table = json.loads((tmp_path / "table.json").read_text())
    assert table["dataset"] == "mnist" and len(table["rows"]) == 2
    assert table["rows"][0]["test_accuracy"] > 0.3      # 10 classes: well above chance
