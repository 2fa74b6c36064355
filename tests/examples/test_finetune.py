"""examples/finetune.py on a generated two-class photo folder: the head trained on a frozen
backbone (checked after every step: no frozen parameter holds a gradient) reaches >= 90 %
validation accuracy; unfreezing trains everything; clear one-line errors.

The test network is ``resnet8`` with random weights (``--random-init``): no pre-trained
weights can be downloaded here, and a random ResNet-18's features did not separate the two
classes reliably within seconds (75-94 % over seeds), while a random shallow ResNet's colour
and texture statistics do.  The frozen backbone's batch norms are calibrated on the training
images first (``calibrate_batch_norm``), as a random backbone has no statistics of its own."""
import json
import os
import pathlib
import subprocess
import sys

import pytest

from benchmarks.bench_finetune import make_photo_folder
from minidl.models import resnet8

REPO = pathlib.Path(__file__).resolve().parents[2]
OFFLINE = "http://127.0.0.1:9"
ARGS = ["--random-init", "--model", "resnet8", "--size", "48", "--min-crop", "0.5",
        "--lr", "0.03", "--batch-size", "16"]


def _run(tmp_path, *args):
    env = dict(os.environ, PYTHONPATH=str(REPO), MINIDL_CACHE=str(tmp_path / "cache"),
               http_proxy=OFFLINE, https_proxy=OFFLINE, HTTP_PROXY=OFFLINE,
               HTTPS_PROXY=OFFLINE, PYTHONWARNINGS="")
    env.pop("MINIDL_DEBUG", None)
    return subprocess.run([sys.executable, str(REPO / "examples" / "finetune.py"),
                           *map(str, args)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env=env)


def _folder(tmp_path, photos: bool):
    data = os.environ.get("MINIDL_DATA")
    if photos and not data:
        pytest.skip("MINIDL_DATA is not set: no photos to crop (the synthetic case runs)")
    root = tmp_path / "photos"
    names = make_photo_folder(root, per_class=40, seed=0,
                              data_dir=pathlib.Path(data) / "images" if photos
                              else tmp_path / "no-photos")
    assert names == (["baboon", "fruits"] if photos else ["stripes", "blobs"])
    return root


@pytest.mark.parametrize("photos", [True, False], ids=["photo-crops", "synthetic"])
def test_frozen_backbone_head_reaches_90_percent(tmp_path, photos):
    root = _folder(tmp_path, photos)
    proc = _run(tmp_path, root, *ARGS, "--epochs", "8", "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "out" / "finetune.json").read_text())
    assert result["val_accuracy"] >= 0.9, proc.stdout
    assert sum(map(sum, result["confusion_matrix"])) == 16          # 20 % of 80 photos
    assert all(e["phase"] == "head" for e in result["epochs"])
    # every parameter but the new head's W and b is frozen, and after each of the
    # 8 epochs x 4 steps none of them held a gradient (the example checks, and fails if so)
    assert {e["frozen_parameters"] for e in result["epochs"]} == {len(_params()) - 2}
    assert result["steps_checked_without_frozen_gradients"] == 8 * 4
    assert result["seconds_per_step"]["frozen"] > 0
    assert result["seconds_per_step"]["unfrozen"] is None
    png = (tmp_path / "out" / "confusion_matrix.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    assert "head only (backbone frozen): 130 of 77,522 parameters train" in proc.stdout
    assert "validation accuracy:" in proc.stdout


def _params():
    return resnet8(in_channels=3).parameters()


def test_unfreeze_after_trains_the_whole_network(tmp_path):
    root = _folder(tmp_path, photos=False)
    proc = _run(tmp_path, root, *ARGS, "--epochs", "2", "--unfreeze-after", "1",
                "--out", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "out" / "finetune.json").read_text())
    assert [e["phase"] for e in result["epochs"]] == ["head", "whole"]
    assert [e["frozen_parameters"] for e in result["epochs"]] == [len(_params()) - 2, 0]
    steps = result["seconds_per_step"]
    assert steps["frozen"] > 0 and steps["unfrozen"] > 0
    assert "whole network: 77,522 of 77,522 parameters train" in proc.stdout


def test_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = _run(tmp_path, tmp_path / "empty", "--random-init")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "is empty" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    root = _folder(tmp_path, photos=False)
    proc = _run(tmp_path, root, "--model", "resnet18")   # no --weights, offline
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "--weights FILE" in proc.stderr and "resnet18" in proc.stderr
    proc = _run(tmp_path, root, "--model", "resnet8")
    assert proc.returncode == 2 and "--random-init" in proc.stderr
