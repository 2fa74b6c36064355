"""minidl.distributed: the one-process world in-process, and real 2-rank runs under
``mpiexec -n 2`` (MPICH from ``pip install 'minidl[mpi]'``), each a few seconds: data-parallel
equivalence with one process, the NCCL path (a fake NCCL on the strict backend) against MPI
with host staging, faults ending every rank, and runs resumed after SIGKILL."""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import minidl
from minidl import distributed
from minidl.data import DataLoader
from minidl.serialization import (array_to_json, json_to_array, load_checkpoint,
                                  save_checkpoint)

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPTS = pathlib.Path(__file__).resolve().parent / "mpi_scripts"
LAUNCH_VARS = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK",
               "PMIX_SIZE", "PMIX_RANK", "SLURM_NTASKS", "SLURM_PROCID", "MPI_LOCALRANKID",
               "OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "PMIX_LOCAL_RANK")


def _env():
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MINIDL_BACKEND="numpy")
    return env


def _mpiexec():
    exe = shutil.which("mpiexec") or str(pathlib.Path(sys.executable).parent / "mpiexec")
    if not os.path.exists(exe):
        pytest.skip("mpiexec not found: pip install 'minidl[mpi]' (mpi4py and MPICH)")
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        pytest.skip("mpi4py not installed: pip install 'minidl[mpi]'")
    return exe


def run_script(script, *args, ranks=None, timeout=60, check=True):
    """Run tests/minidl/mpi_scripts/<script> alone (ranks=None) or under mpiexec -n ranks."""
    cmd = [sys.executable, str(SCRIPTS / script), *map(str, args)]
    if ranks is not None:
        cmd = [_mpiexec(), "-n", str(ranks)] + cmd
    proc = subprocess.run(cmd, cwd=SCRIPTS, env=_env(), capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n"
                             f"{proc.stderr}")
    return proc


# --------------------------------------------------------------------------- one process

def test_one_process_world_is_a_no_op():
    assert distributed.init() == 1
    assert (distributed.rank(), distributed.world_size(), distributed.local_rank()) == (0, 1, 0)
    assert distributed.is_main()
    a = [np.arange(6.0).reshape(2, 3)]
    distributed.allreduce_mean_(a)
    distributed.broadcast_(a)
    distributed.barrier()
    np.testing.assert_array_equal(a[0], np.arange(6.0).reshape(2, 3))


def test_importing_minidl_does_not_import_mpi4py():
    code = ("import sys, minidl, minidl.train, minidl.data, minidl.distributed as d\n"
            "assert d.world_size() == 1\n"
            "print('mpi4py' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True,
                         text=True, timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("variables,size", [
    ({"PMI_SIZE": "4", "PMI_RANK": "1"}, 4),
    ({"OMPI_COMM_WORLD_SIZE": "3", "OMPI_COMM_WORLD_RANK": "0"}, 3),
    ({"SLURM_NTASKS": "8", "SLURM_PROCID": "7"}, 8),
    ({"PMI_SIZE": "2"}, 1),                    # a size without a rank is not a launch
    ({}, 1),
])
def test_launch_detection_reads_the_launchers_environment(monkeypatch, variables, size):
    for k in LAUNCH_VARS:
        monkeypatch.delenv(k, raising=False)
    for k, v in variables.items():
        monkeypatch.setenv(k, v)
    assert distributed.launched_size() == size


def test_a_launch_without_mpi4py_names_the_install_command():
    code = ("import sys; sys.modules['mpi4py'] = None\n"
            "import minidl.distributed as d\n"
            "try:\n    d.init()\nexcept d.MPIUnavailableError as e:\n    print(e)\n")
    env = dict(_env(), PMI_SIZE="2", PMI_RANK="0")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=60, cwd=ROOT)
    assert "pip install 'minidl[mpi]'" in out.stdout and "2 processes" in out.stdout, \
        out.stdout + out.stderr


def test_shards_are_disjoint_slices_of_the_same_global_batches():
    x, y = np.zeros((23, 2)), np.arange(23)
    one = [b for _, b in DataLoader(x, y, batch_size=6, shuffle=True, seed=4)]
    shards = [DataLoader(x, y, batch_size=6, shuffle=True, seed=4, shard=(r, 3))
              for r in range(3)]
    assert all(len(s) == len(one) - 0 for s in shards)       # last batch 5 >= 3 ranks: kept
    parts = [[b for _, b in s] for s in shards]
    for k, batch in enumerate(one):
        pieces = [p[k] for p in parts]
        np.testing.assert_array_equal(np.concatenate(pieces), batch)
        assert [len(p) for p in pieces] == ([2, 2, 2] if len(batch) == 6 else [2, 2, 1])
    assert shards[2].last_share == pytest.approx(1 / 5)


def test_a_last_batch_smaller_than_the_world_is_skipped_everywhere():
    x, y = np.zeros((13, 2)), np.arange(13)
    loaders = [DataLoader(x, y, batch_size=6, shard=(r, 3)) for r in range(3)]
    assert [len(d) for d in loaders] == [2, 2, 2]
    assert sorted(np.concatenate([b for d in loaders for _, b in d])) == list(range(12))


def test_shard_refuses_a_batch_size_the_world_does_not_divide():
    with pytest.raises(ValueError, match=r"batch_size .*100.* divisible .* \(3\).* 99 or 102"):
        DataLoader(np.zeros((10, 2)), np.arange(10), batch_size=100, shard=(0, 3))
    with pytest.raises(ValueError, match="shard must be"):
        DataLoader(np.zeros((10, 2)), np.arange(10), shard=(3, 3))


def test_loader_state_resumes_mid_epoch_with_the_same_batches():
    x, y = np.zeros((50, 2)), np.arange(50)
    a = DataLoader(x, y, batch_size=8, shuffle=True, seed=1)
    it = iter(a)
    [next(it) for _ in range(3)]
    state = a.state_dict()
    rest = [b for _, b in it] + [b for _, b in a]             # this epoch's rest, the next
    b = DataLoader(x, y, batch_size=8, shuffle=True, seed=1)
    b.load_state_dict(state)
    assert b.resume_position == 3
    again = [c for _, c in b] + [c for _, c in b]
    assert len(again) == len(rest)
    for u, v in zip(rest, again):
        np.testing.assert_array_equal(u, v)
    with pytest.raises(ValueError, match="50 samples in batches of 8, this one has 50 "
                                         "samples in batches of 10"):
        DataLoader(x, y, batch_size=10).load_state_dict(state)


def test_checkpoint_parts_and_json_entries_round_trip(tmp_path):
    big = {"state": 2**127 + 5, "name": "PCG64", "list": [1.5, None]}
    assert array_to_json(json_to_array(big)) == big
    parts = {"model": {"w": np.arange(3.0)}, "fit": {"meta": json_to_array(big)}}
    save_checkpoint(tmp_path / "c.npz", parts)
    back = load_checkpoint(tmp_path / "c.npz")
    np.testing.assert_array_equal(back["model"]["w"], np.arange(3.0))
    assert array_to_json(back["fit"]["meta"]) == big
    minidl.serialization.save_state(tmp_path / "plain.npz", {"w": np.zeros(2)})
    with pytest.raises(ValueError, match="not a checkpoint entry"):
        load_checkpoint(tmp_path / "plain.npz")


# --------------------------------------------------------------------------- mpiexec -n 2

@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_two_ranks_of_64_equal_one_process_of_128(tmp_path, optimizer):
    """Float64, 3 epochs of 389 samples (a last global batch of 5: split 3 + 2 and weighted),
    Nesterov SGD with weight decay or Adam, a one-cycle schedule; rank 1 starts from other
    weights, so the broadcast matters.  Parameters, metrics and confusion matrix agree."""
    run_script("equivalence.py", tmp_path / "two.npz", optimizer, ranks=2)
    run_script("equivalence.py", tmp_path / "one.npz", optimizer)
    two, one = np.load(tmp_path / "two.npz"), np.load(tmp_path / "one.npz")
    assert int(two["world"]) == 2 and int(one["world"]) == 1
    assert int(two["reducer_steps"]) == 12 and int(one["reducer_steps"]) == 0   # overlapped
    for key in one.files:
        if key in ("world", "reducer_steps"):
            continue
        scale = max(np.abs(one[key]).max(), 1e-12)
        assert np.abs(two[key] - one[key]).max() <= 1e-6 * scale, key
    assert one["metric.train_loss"][-1] < one["metric.train_loss"][0]   # it did train


def test_nccl_path_on_the_strict_backend_averages_like_mpi_with_host_staging(tmp_path):
    run_script("nccl_vs_mpi.py", tmp_path / "g.npz", ranks=2)
    g, other = np.load(tmp_path / "g.npz"), np.load(str(tmp_path / "g.npz") + ".rank1.npz")
    n = len([k for k in g.files if k.startswith("mpi")])
    assert n == 6
    for i in range(n):
        mean = (g[f"local{i}"] + other[f"local{i}"]) / 2
        assert not np.allclose(g[f"local{i}"], other[f"local{i}"])   # ranks differ
        np.testing.assert_allclose(g[f"mpi{i}"], mean, rtol=1e-15, atol=0)
        np.testing.assert_array_equal(g[f"nccl{i}"], g[f"mpi{i}"])
    assert list(g["buckets"]) == [640, 32, 1024, 164]   # 4 KiB buckets of flat buffers


def test_two_ranks_train_bitwise_alike_with_and_without_overlap(tmp_path):
    """fit's overlapped averaging (the default) against the blocking reference, 2 ranks."""
    run_script("equivalence.py", tmp_path / "overlap.npz", "adam", ranks=2)
    run_script("equivalence.py", tmp_path / "blocking.npz", "adam", "blocking", ranks=2)
    on, off = np.load(tmp_path / "overlap.npz"), np.load(tmp_path / "blocking.npz")
    assert int(on["reducer_steps"]) == 12 and int(off["reducer_steps"]) == 0   # 3 x 4 steps
    for key in on.files:
        if key != "reducer_steps":
            np.testing.assert_array_equal(on[key], off[key], err_msg=key)


def test_overlapped_reducer_equals_blocking_average_bitwise_on_two_ranks(tmp_path):
    """Mean and weighted sum; NumPy through MPI Iallreduce (polled by the progress thread or
    from the hooks), the strict backend through MPI with host staging and through a fake
    NCCL; every bucket started during backward."""
    run_script("reducer_vs_blocking.py", tmp_path / "r.npz", ranks=2)
    g, other = np.load(tmp_path / "r.npz"), np.load(str(tmp_path / "r.npz") + ".rank1.npz")
    keys = sorted({k.rsplit(".", 1)[0] for k in g.files if ".blocking" in k or ".during" in k})
    assert keys == sorted(f"{b}.{c}.{w}" for b, c in [("numpy", "mpi"), ("numpy", "mpi-hooks"),
                                                     ("strict", "mpi"), ("strict", "nccl")]
                          for w in ("mean", "weighted"))
    for key in keys:
        during, buckets = g[key + ".during"]
        assert during == buckets == 5, key        # all started inside backward
        for i in range(6):
            np.testing.assert_array_equal(g[f"{key}.overlap{i}"], g[f"{key}.blocking{i}"])
            assert np.array_equal(other[f"{key}.overlap{i}"], g[f"{key}.overlap{i}"])
            mine, theirs = g[f"local{i}"], other[f"local{i}"]
            expected = (mine + theirs) / 2 if key.endswith("mean") else \
                0.625 * mine + 0.375 * theirs
            np.testing.assert_allclose(g[f"{key}.overlap{i}"], expected, rtol=1e-14,
                                       atol=1e-300)


@pytest.mark.parametrize("mode,message,who", [
    ("raise", "ValueError: rank one fails on purpose at batch 3", "[rank 1/2]"),
    # every rank raises it; the first to abort may end the other before it prints
    ("mismatch", "do not build the same model: 0.W: rank 0 has shape (32, 20) float64, "
                 "rank 1 has shape (48, 20)", "/2] uncaught exception"),
])
def test_an_error_on_one_rank_ends_every_rank_with_its_message(mode, message, who):
    start = time.perf_counter()
    proc = run_script("faults.py", mode, ranks=2, timeout=30, check=False)
    assert proc.returncode != 0
    assert time.perf_counter() - start < 30
    assert message in proc.stderr, proc.stderr
    assert who in proc.stderr
    assert "finished without error" not in proc.stdout


# --------------------------------------------------------------------------- resuming

def _same(a, b):
    a, b = np.load(a), np.load(b)
    assert a.files == b.files
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_a_run_killed_mid_epoch_resumes_to_the_same_parameters(tmp_path):
    """SIGKILL in batch 10 (epoch 2 of 3); the resumed run ends bitwise where an
    uninterrupted one does (shuffling, noise, dropout, Adam, one-cycle)."""
    run_script("resume_run.py", "full", tmp_path / "unused.npz", tmp_path / "full.npz")
    proc = run_script("resume_run.py", "kill", tmp_path / "c.npz", tmp_path / "x.npz", 10,
                      check=False)
    assert proc.returncode == -9 and not (tmp_path / "x.npz").exists()
    proc = run_script("resume_run.py", "resume", tmp_path / "c.npz", tmp_path / "res.npz")
    assert "mid-epoch 2, optimizer step 9" in proc.stdout
    _same(tmp_path / "full.npz", tmp_path / "res.npz")


def test_a_kill_during_the_checkpoint_write_keeps_the_previous_one(tmp_path):
    run_script("resume_run.py", "full", tmp_path / "unused.npz", tmp_path / "full.npz")
    proc = run_script("resume_run.py", "killwrite", tmp_path / "c.npz", tmp_path / "x.npz",
                      12, check=False)
    assert proc.returncode == -9
    leftovers = list(tmp_path.glob("c.npz.*.tmp.npz"))
    assert len(leftovers) == 1   # SIGKILL: nothing could run; the next writer removes it
    previous = load_checkpoint(tmp_path / "c.npz")
    # one save per batch (7 per epoch): the 12th, after step 12, was killed; step 11's stays
    assert int(previous["optimizer"]["step_count"]) == 11
    proc = run_script("resume_run.py", "resume", tmp_path / "c.npz", tmp_path / "res.npz")
    assert not list(tmp_path.glob("*.tmp.npz"))
    _same(tmp_path / "full.npz", tmp_path / "res.npz")


def test_a_two_rank_run_resumes_on_two_ranks_and_says_what_one_rank_does(tmp_path):
    run_script("resume_run.py", "full", tmp_path / "unused.npz", tmp_path / "full.npz",
               ranks=2)
    proc = run_script("resume_run.py", "kill", tmp_path / "c.npz", tmp_path / "x.npz", 10,
                      ranks=2, check=False)
    assert proc.returncode != 0
    shutil.copy(tmp_path / "c.npz", tmp_path / "c1.npz")
    run_script("resume_run.py", "resume", tmp_path / "c.npz", tmp_path / "res.npz", ranks=2)
    _same(tmp_path / "full.npz", tmp_path / "res.npz")
    proc = run_script("resume_run.py", "resume", tmp_path / "c1.npz", tmp_path / "one.npz")
    assert "resuming a run saved on 2 process(es) on 1: the same global batches of 64 " \
           "continue in the same order, each now split over 1 process(es) (64 samples each)" \
           in proc.stdout


# --------------------------------------------------------------------------- beyond training

def test_kmeans_over_two_ranks_equals_one_process_and_is_a_lloyd_fixed_point(tmp_path):
    from minifeat.kmeans import KMeans
    run_script("kmeans.py", tmp_path / "two.npz", ranks=2)
    run_script("kmeans.py", tmp_path / "one.npz")
    two, one = np.load(tmp_path / "two.npz"), np.load(tmp_path / "one.npz")
    np.testing.assert_allclose(two["centers"], one["centers"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(two["history"], one["history"], rtol=1e-12)
    assert float(two["inertia"]) == pytest.approx(float(one["inertia"]), rel=1e-12)
    # converged (tol=0): one more Lloyd step of minifeat's KMeans over all rows moves nothing
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((6, 8)) * 5
    X = np.concatenate([c + rng.standard_normal((300, 8)) for c in centres])
    again = KMeans(6, init=one["centers"], max_iter=1).fit(X)
    np.testing.assert_allclose(again.cluster_centers_, one["centers"], atol=1e-10)
    assert again.inertia_ == pytest.approx(float(one["inertia"]), rel=1e-12)
