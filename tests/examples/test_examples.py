"""Smoke tests: every example runs end to end at tiny settings (a few hundred images)."""
import numpy as np
import pytest
from PIL import Image


def tiny_args(data_dir, out, backend="numpy"):
    return ["--backend", backend, "--epochs", "1", "--batch-size", "50", "--limit", "300",
            "--target-acc", "0", "--quiet", "--data-dir", str(data_dir), "--out", str(out)]


@pytest.mark.parametrize("name", ["mnist_mlp", "mnist_cnn", "fashion_mnist_cnn"])
def test_training_example_runs(name, data_dir, tmp_path, capsys, load_example):
    status = load_example(name).main(tiny_args(data_dir, tmp_path))
    out = capsys.readouterr().out
    assert status == 0
    assert "test accuracy" in out
    assert (tmp_path / "best.npz").is_file()


def test_training_example_exits_nonzero_when_target_missed(data_dir, tmp_path, capsys,
                                                           load_example):
    args = tiny_args(data_dir, tmp_path)
    args[args.index("--target-acc") + 1] = "1.01"  # unreachable
    assert load_example("mnist_mlp").main(args) == 1
    assert "MISSED" in capsys.readouterr().out


def test_cnn_example_runs_under_strict_backend(data_dir, tmp_path, load_example):
    """The main job's code path never calls a NumPy-only function on backend arrays."""
    args = tiny_args(data_dir, tmp_path, backend="strict")
    args[args.index("--limit") + 1] = "100"
    assert load_example("mnist_cnn").main(args) == 0


def test_predict_digit_on_a_test_image(data_dir, tmp_path, capsys, load_example):
    """Train briefly, write a real test-set digit as a PNG (black ink on white paper, larger
    than 28x28, as a user's photo would be) and classify it."""
    from minidl.data import load_mnist

    model_dir = tmp_path / "model"
    args = tiny_args(data_dir, model_dir)
    args[args.index("--limit") + 1] = "2000"
    args[args.index("--epochs") + 1] = "2"
    assert load_example("mnist_cnn").main(args) == 0
    capsys.readouterr()

    x_test, y_test = load_mnist("test", data_dir=data_dir)
    digit = 255 - x_test[0]                                   # dark ink on light paper
    png = tmp_path / "digit.png"
    Image.fromarray(digit).resize((112, 112), Image.Resampling.BILINEAR).save(png)

    predict = load_example("predict_digit")
    prepared = predict.prepare_digit(png)
    assert prepared.shape == (28, 28) and prepared.dtype == np.float32
    assert 0.0 <= prepared.min() and prepared.max() <= 1.0

    assert predict.main([str(png), "--model", str(model_dir / "best.npz")]) == 0
    lines = capsys.readouterr().out.splitlines()
    top = [line.split() for line in lines[1:4]]
    assert len(top) == 3
    assert int(top[0][0]) == int(y_test[0])                   # a 7, classified as 7


def test_predict_digit_missing_model_is_a_clear_error(tmp_path, load_example):
    png = tmp_path / "digit.png"
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(png)
    with pytest.raises(SystemExit, match="no model at"):
        load_example("predict_digit").main([str(png), "--model", str(tmp_path / "none.npz")])


def test_predict_digit_blank_image_is_a_clear_error(tmp_path, load_example):
    png = tmp_path / "blank.png"
    Image.fromarray(np.full((40, 40), 255, np.uint8)).save(png)
    with pytest.raises(SystemExit, match="no digit found"):
        load_example("predict_digit").prepare_digit(png)


def test_missing_data_set_is_a_clear_exit(tmp_path, monkeypatch, load_example):
    """Offline with no files: the example stops with the loader's explanation, no traceback."""
    monkeypatch.delenv("MINIDL_DATA", raising=False)
    monkeypatch.setenv("MINIDL_CACHE", str(tmp_path / "cache"))
    import dataclasses

    import minidl.data.datasets as datasets
    # port 9 (discard) on this machine: refused at once, never the network
    offline = dataclasses.replace(datasets.MNIST_INFO, mirrors=("http://127.0.0.1:9/",))
    monkeypatch.setattr(datasets, "MNIST_INFO", offline)
    with pytest.raises(SystemExit, match="error: .*train-images"):
        load_example("mnist_mlp").main(["--data-dir", str(tmp_path / "empty"), "--quiet",
                                        "--out", str(tmp_path / "out")])


@pytest.mark.parametrize("name", ["mnist_cnn", "mnist_resnet", "classify_image",
                                  "predict_digit", "compare_representations"])
def test_examples_fuse_their_model_once_visibly(name):
    """Each example that trains or evaluates a CNN calls minidl.fuse on it once (the runs it
    fuses are an explicit step, not hidden in Sequential); fashion_mnist_cnn trains through
    mnist_cnn.train_cnn."""
    import pathlib
    source = (pathlib.Path(__file__).parents[2] / "examples" / f"{name}.py").read_text()
    assert source.count("minidl.fuse(") == 1
