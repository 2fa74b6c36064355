"""Every example and CLI answers an ordinary mistake with one line on stderr and a non-zero status:
a missing file, a file that is not an image, a wrong model file, a bad option value (status 2), a
diverging training run; no traceback unless ``--debug``; Ctrl-C exits 130 with one line."""
import os
import pathlib
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

REPO = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
OFFLINE = "http://127.0.0.1:9"      # port 9 (discard): refused at once, never the network


def _env(tmp_path, **extra):
    env = dict(os.environ, PYTHONPATH=str(REPO), MINIDL_CACHE=str(tmp_path / "cache"),
               http_proxy=OFFLINE, https_proxy=OFFLINE, HTTP_PROXY=OFFLINE,
               HTTPS_PROXY=OFFLINE, PYTHONWARNINGS="")
    env.pop("MINIDL_DEBUG", None)
    env.update(extra)
    return env


def _run(tmp_path, args, **env):
    """``python <args>`` in the repository root; -> (status, stderr)."""
    proc = subprocess.run([sys.executable, *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env=_env(tmp_path, **env))
    return proc.returncode, proc.stderr


def _assert_one_line_error(status, stderr, expect_status=None):
    assert status != 0, stderr
    if expect_status is not None:
        assert status == expect_status, stderr
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert 1 <= len(lines) <= 3, stderr
    assert lines[-1].startswith("error: "), stderr


@pytest.fixture
def files(tmp_path):
    """A missing path, a text file, a small 8-bit picture, a CNN and an MLP checkpoint, a
    garbage .pth and a data folder whose IDX files are garbage."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        from mnist_cnn import build_cnn
        from mnist_mlp import build_mlp
    finally:
        sys.path.remove(str(EXAMPLES))
    f = {"missing": tmp_path / "missing.png", "text": REPO / "README.md",
         "image": tmp_path / "digit.png", "cnn": tmp_path / "cnn.npz",
         "mlp": tmp_path / "mlp.npz", "pth": tmp_path / "garbage.pth",
         "data": tmp_path / "garbage_data", "out": tmp_path / "out"}
    im = np.zeros((28, 28), np.uint8)
    im[6:22, 12:16] = 255
    Image.fromarray(im).save(f["image"])
    build_cnn().save(f["cnn"])
    build_mlp().save(f["mlp"])
    f["pth"].write_bytes(b"\x80\x02garbage, not a checkpoint")
    f["data"].mkdir()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (f["data"] / f"{name}.gz").write_bytes(b"garbage")
    return f


IMAGE_EXAMPLES = {                        # script -> the arguments after its image
    "detectors.py": lambda f: ["-o", f["out"]],
    "sift_keypoints.py": lambda f: ["-o", f["out"] / "k.jpg"],
    "sift_match.py": lambda f: [f["image"], "-o", f["out"] / "m.jpg"],
    "predict_digit.py": lambda f: ["--model", f["cnn"]],
    "classify_image.py": lambda f: ["--model", "resnet18"],
    "scale_space.py": lambda f: ["--out", f["out"]],
    "pixels.py": lambda f: ["--out", f["out"]],
}
OTHER_EXAMPLES = {                        # script -> arguments that get as far as its options
    "visualize_cnn.py": lambda f: ["--model", f["cnn"], "--out", f["out"]],
    "bovw_classify.py": lambda f: [f["data"], "--out", f["out"]],
    "bovw_search.py": lambda f: [f["data"], f["image"], "--out", f["out"] / "r.png"],
    "finetune.py": lambda f: [f["data"], "--random-init", "--out", f["out"]],
}
TRAINING_EXAMPLES = ["mnist_mlp.py", "mnist_cnn.py", "fashion_mnist_cnn.py", "mnist_resnet.py",
                     "compare_representations.py"]


@pytest.mark.parametrize("script", sorted(IMAGE_EXAMPLES))
@pytest.mark.parametrize("which", ["missing", "text"])
def test_image_examples_reject_a_missing_or_non_image_file_in_one_line(script, which, files,
                                                                      tmp_path):
    status, err = _run(tmp_path, [EXAMPLES / script, files[which],
                                  *IMAGE_EXAMPLES[script](files)])
    _assert_one_line_error(status, err, 1)
    assert str(files[which].name) in err


def test_every_example_is_in_these_error_tests():
    scripts = {p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")}
    listed = set(IMAGE_EXAMPLES) | set(TRAINING_EXAMPLES) | set(OTHER_EXAMPLES)
    assert scripts == listed, f"add {sorted(scripts - listed)} to this module's tables"


def _positional(script, files):
    if script in IMAGE_EXAMPLES:
        return [files["image"], *IMAGE_EXAMPLES[script](files)]
    return OTHER_EXAMPLES[script](files) if script in OTHER_EXAMPLES else []


@pytest.mark.parametrize("script", sorted(IMAGE_EXAMPLES) + TRAINING_EXAMPLES
                         + sorted(OTHER_EXAMPLES))
@pytest.mark.parametrize("option", [["--backend", "tpu"], ["--nonsense"]])
def test_every_example_rejects_a_bad_option_in_one_line_with_status_2(script, option, files,
                                                                     tmp_path):
    positional = _positional(script, files)
    status, err = _run(tmp_path, [EXAMPLES / script, *positional, *option])
    _assert_one_line_error(status, err, 2)
    assert option[-1].lstrip("-") in err


@pytest.mark.parametrize("script,option", [
    ("mnist_mlp.py", ["--epochs", "-1"]), ("mnist_cnn.py", ["--batch-size", "0"]),
    ("mnist_resnet.py", ["--lr", "-0.1"]), ("compare_representations.py", ["--step", "0"]),
    ("detectors.py", ["--max-size", "0"]), ("sift_match.py", ["--ratio", "2"]),
    ("sift_keypoints.py", ["--n-features", "-5"]), ("classify_image.py", ["--top", "x"]),
    ("scale_space.py", ["--contrast", "-1"]), ("pixels.py", ["--cell", "0"]),
    ("visualize_cnn.py", ["--limit", "0"]), ("bovw_classify.py", ["--vocab", "0"]),
    ("bovw_search.py", ["--top", "0"]), ("finetune.py", ["--val-fraction", "2"])])
def test_bad_option_values_are_usage_errors(script, option, files, tmp_path):
    positional = _positional(script, files)
    status, err = _run(tmp_path, [EXAMPLES / script, *positional, *option])
    _assert_one_line_error(status, err, 2)
    assert option[0] in err


@pytest.mark.parametrize("script", TRAINING_EXAMPLES)
def test_training_examples_reject_damaged_data_files_in_one_line(script, files, tmp_path):
    extra = (["--dataset", "mnist", "--json", files["out"] / "c.json"]
             if script == "compare_representations.py" else ["--out", files["out"]])
    status, err = _run(tmp_path, [EXAMPLES / script, "--data-dir", files["data"], "--quiet",
                                  *extra])
    _assert_one_line_error(status, err, 1)
    assert "train-images" in err


def test_predict_digit_given_an_mlp_checkpoint_says_so_in_one_line(files, tmp_path):
    status, err = _run(tmp_path, [EXAMPLES / "predict_digit.py", files["image"],
                                  "--model", files["mlp"]])
    _assert_one_line_error(status, err, 1)
    assert "mlp.npz" in err and "not a checkpoint of the CNN" in err


@pytest.mark.parametrize("weights", ["text", "pth", "mlp", "missing"])
def test_classify_image_given_a_wrong_weights_file_says_so_in_one_line(weights, files,
                                                                       tmp_path):
    status, err = _run(tmp_path, [EXAMPLES / "classify_image.py", files["image"],
                                  "--model", "resnet18", "--weights", files[weights]])
    _assert_one_line_error(status, err, 1)
    assert files[weights].name in err


@pytest.mark.parametrize("which", ["pth", "missing", "text"])
def test_convert_refuses_a_garbage_or_missing_file_in_one_line(which, files, tmp_path):
    status, err = _run(tmp_path, ["-m", "minidl.convert", "torchvision", files[which],
                                  tmp_path / "out.npz"])
    _assert_one_line_error(status, err, 1)
    assert files[which].name in err
    assert not (tmp_path / "out.npz").exists()


def test_convert_and_benchmarks_usage_errors_are_one_line(tmp_path):
    status, err = _run(tmp_path, ["-m", "minidl.convert", "tv", "a.pth", "b.npz"])
    _assert_one_line_error(status, err, 2)
    status, err = _run(tmp_path, ["-m", "benchmarks", "--threads", "0"], GLIBC_TUNABLES="")
    _assert_one_line_error(status, err, 2)


def test_benchmarks_help_names_the_command(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=60,
                          env=_env(tmp_path, GLIBC_TUNABLES=""))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage: python -m benchmarks")
    assert "__main__" not in proc.stdout


@pytest.mark.parametrize("script", sorted(IMAGE_EXAMPLES) + TRAINING_EXAMPLES)
def test_every_option_has_help_and_no_doubled_default(script, files, tmp_path):
    proc = subprocess.run([sys.executable, EXAMPLES / script, "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=60, env=_env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    text = " ".join(proc.stdout.split())
    assert "(default: None)" not in text and text.count("(default:") >= 1
    lines = proc.stdout.split("options:", 1)[1].splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("  -"):
            continue
        same_line = len(line.strip().split("  ", 1)) == 2
        next_line = i + 1 < len(lines) and lines[i + 1].startswith(" " * 10)
        assert same_line or next_line, f"{script}: no help for {line.strip()}"
    assert "--debug" in text


def test_debug_shows_the_traceback(files, tmp_path):
    args = [EXAMPLES / "detectors.py", files["missing"], "-o", files["out"]]
    status, err = _run(tmp_path, [*args, "--debug"])
    assert status == 1 and "Traceback" in err and "FileNotFoundError" in err
    status, err = _run(tmp_path, args, MINIDL_DEBUG="1")
    assert status == 1 and "Traceback" in err
    status, err = _run(tmp_path, ["-m", "minidl.convert", "torchvision", files["pth"],
                                  tmp_path / "o.npz", "--debug"])
    assert status == 1 and "Traceback" in err


def test_divergence_is_one_line(data_dir, tmp_path):
    status, err = _run(tmp_path, [EXAMPLES / "mnist_mlp.py", "--lr", "1e30", "--limit", "500",
                                  "--epochs", "1", "--quiet", "--out", tmp_path / "out"],
                       MINIDL_DATA=str(data_dir))
    _assert_one_line_error(status, err, 1)
    assert "diverged" in err


def _as_from_a_shell():
    """In the child before exec: SIGINT unblocked and at its default, as an interactive shell
    starts a program.  A child inherits its parent's ignored and blocked signals; in about half
    of the fresh-clone CI runs the example kept training 30 s after the signal (py-spy: in
    backward, no KeyboardInterrupt), which an ignored or blocked SIGINT inherited from the test
    runner explains (not proven: it never happened outside a full fresh-clone run)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.skipif(os.name != "posix", reason="SIGINT to a child process needs POSIX")
def test_ctrl_c_exits_130_with_one_line(data_dir, tmp_path):
    proc = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "mnist_mlp.py"), "--limit", "20000", "--epochs", "50",
         "--target-acc", "0", "--quiet", "--out", str(tmp_path / "out")],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=_env(tmp_path, MINIDL_DATA=str(data_dir)), preexec_fn=_as_from_a_shell)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:          # wait until training has begun
            if proc.stdout.readline().startswith("Sequential") or proc.poll() is not None:
                break
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()   # reaps the child and closes its pipes, even after a timeout
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().splitlines() == ["interrupted"], err


@pytest.mark.parametrize("which", ["mlp", "pth", "missing"])
def test_visualize_cnn_given_a_wrong_model_file_says_so_in_one_line(which, files, tmp_path):
    status, err = _run(tmp_path, [EXAMPLES / "visualize_cnn.py", "--model", files[which],
                                  "--out", files["out"]])
    _assert_one_line_error(status, err, 1)
    assert files[which].name in err
