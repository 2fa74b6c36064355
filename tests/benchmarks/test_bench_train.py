"""benchmarks.bench_train: the time-to-accuracy race runs minidl on CuPy too when a GPU is
there, and reads each script's printed summary (no training here: the runs are stubbed)."""
import pytest

from benchmarks import bench_train

MINIDL_OUT = """epoch  test acc  train s
    1    98.10%      17.5
    2    99.05%      17.9
time to 99.0% test accuracy: 35.4s of training
test accuracy 99.05% (target 99.20%): not met
"""


@pytest.mark.parametrize("gpu", [False, True])
def test_time_to_accuracy_races_cupy_only_with_a_gpu(monkeypatch, gpu):
    seen = []

    def fake_run(cmd, threads):
        seen.append(cmd)
        return {"time_to_99_s": 35.4, "final_accuracy": 0.9905, "wall_s": 40.0,
                "epoch_s": [17.5, 17.9], "returncode": 1}

    monkeypatch.setattr(bench_train, "_time_to_accuracy_run", fake_run)
    monkeypatch.setattr(bench_train, "cupy_backend", lambda: object() if gpu else None)
    out = bench_train.time_to_accuracy(threads=2, seeds=1)
    names = ["minidl numpy", "torch CPU"] + (["minidl cupy"] if gpu else [])
    assert list(out) == names
    cupy_cmds = [c for c in seen if "--backend" in c]
    assert len(cupy_cmds) == int(gpu)
    if gpu:
        assert cupy_cmds[0][cupy_cmds[0].index("--backend") + 1] == "cupy"
    assert out["minidl numpy"]["time_to_99_s"] == 35.4


def test_a_run_is_read_from_its_printed_summary(monkeypatch):
    class Done:
        returncode, stdout, stderr = 1, MINIDL_OUT, ""

    monkeypatch.setattr(bench_train.subprocess, "run", lambda *a, **k: Done())
    r = bench_train._time_to_accuracy_run(["python", "examples/mnist_cnn.py"], threads=2)
    assert r["time_to_99_s"] == 35.4 and r["final_accuracy"] == pytest.approx(0.9905)
    assert r["epoch_s"] == [17.5, 17.9] and r["returncode"] == 1


def test_the_benchmarked_minidl_step_runs_the_fused_model(monkeypatch):
    """bench_train times the model as the examples train it: fused by minidl.fuse."""
    import minidl.fusion
    fused = []
    original = minidl.fusion.fuse

    def spy(model):
        fused.append(type(model).__name__)
        return original(model)
    monkeypatch.setattr(minidl.fusion, "fuse", spy)
    out = bench_train._run_minidl("cnn", steps=1, warmup=0, backend="numpy")
    assert fused == ["Sequential"] and out["seconds_per_step"] > 0
