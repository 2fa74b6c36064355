"""minidl.serialization: .npz state files without pickle -- round trip from any backend,
atomic writes, and clear errors for bad paths, keys, values and files."""
import io
import os
import signal
import subprocess
import sys
import time
import zipfile
from collections import OrderedDict

import numpy as np
import pytest

from minidl import backend as B
from minidl.serialization import (
    FORMAT_VERSION, load_state, remove_stale_temporaries, save_state,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_round_trip_is_bit_exact_and_keeps_order_and_dtypes(xp, rng, tmp_path):
    state = OrderedDict([
        ("fc2.W", xp.asarray(rng.standard_normal((3, 4)).astype(np.float32))),
        ("fc1.b", xp.asarray(rng.standard_normal(5))),
        ("bn.count", xp.asarray(np.array([7], dtype=np.int64))),
        ("scalar", xp.asarray(np.float32(1.5))),
    ])
    path = tmp_path / "sub" / "dir" / "state.npz"  # parents are created
    save_state(path, state)
    loaded = load_state(path)
    assert list(loaded) == list(state)
    for k, v in state.items():
        got = loaded[k]
        assert isinstance(got, np.ndarray)  # host arrays: the module moves them
        assert got.dtype == v.dtype and got.shape == v.shape
        np.testing.assert_array_equal(got, B.to_host(v))
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.npz"]  # no temp file left


def test_file_has_a_format_version_and_no_object_arrays(tmp_path):
    save_state(tmp_path / "s.npz", {"w": np.ones(2)})
    with np.load(tmp_path / "s.npz", allow_pickle=False) as data:
        assert data.files == ["w", "__minidl__"]
        assert data["__minidl__"].tolist() == [FORMAT_VERSION]
        assert all(data[k].dtype != object for k in data.files)


def test_overwrite_replaces_the_file(tmp_path):
    save_state(tmp_path / "s.npz", {"a": np.zeros(2)})
    save_state(tmp_path / "s.npz", {"b": np.ones(3)})
    assert list(load_state(tmp_path / "s.npz")) == ["b"]


def test_save_rejects_bad_paths_keys_and_values(tmp_path):
    with pytest.raises(ValueError, match=r"save_state: path must end in .npz, got '.*model.pt'"):
        save_state(tmp_path / "model.pt", {"w": np.ones(2)})
    with pytest.raises(ValueError, match="save_state: keys must be str and not '__minidl__', "
                                         "got 3"):
        save_state(tmp_path / "s.npz", {3: np.ones(2)})
    with pytest.raises(ValueError, match="got '__minidl__'"):
        save_state(tmp_path / "s.npz", {"__minidl__": np.ones(2)})
    with pytest.raises(TypeError, match="save_state: 'w' must be a numeric array, got list"):
        save_state(tmp_path / "s.npz", {"w": [1.0, 2.0]})
    with pytest.raises(TypeError, match="save_state: 'o' must be a numeric array, got ndarray"):
        save_state(tmp_path / "s.npz", {"o": np.array([{"a": 1}], dtype=object)})
    assert list(tmp_path.iterdir()) == []  # nothing written by a failed save


def test_load_rejects_missing_corrupt_pickled_and_newer_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="load_state: no such file: '.*nope.npz'"):
        load_state(tmp_path / "nope.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match=r"load_state: '.*junk.npz' is not a readable .npz "
                                         r"state file \(not a zip archive\)"):
        load_state(tmp_path / "junk.npz")
    np.savez(tmp_path / "pickled.npz", o=np.array([{"code": 1}], dtype=object))
    with pytest.raises(ValueError, match=r"'.*pickled.npz' is not a readable .npz state file "
                                         r"\(ValueError: .*allow_pickle=False"):
        load_state(tmp_path / "pickled.npz")
    np.savez(tmp_path / "future.npz", w=np.ones(2),
             __minidl__=np.array([FORMAT_VERSION + 1]))
    with pytest.raises(ValueError, match=rf"'.*future.npz' has format version "
                                         rf"{FORMAT_VERSION + 1}, newer than this minidl "
                                         rf"\({FORMAT_VERSION}\)"):
        load_state(tmp_path / "future.npz")


def test_a_plain_npz_without_metadata_loads(tmp_path):
    np.savez(tmp_path / "plain.npz", W=np.eye(2))
    state = load_state(tmp_path / "plain.npz")
    assert list(state) == ["W"]
    np.testing.assert_array_equal(state["W"], np.eye(2))


# --------------------------------------------------------------------------- issue 21, item 9

def _dead_pid():
    """The PID of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _temporaries(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp.npz"))


def test_a_save_killed_with_sigkill_leaves_a_temporary_the_next_save_removes(tmp_path):
    """A real process killed with SIGKILL while writing a 256 MB state: its full-size
    temporary file stays (nothing can run in a SIGKILLed process), and the next save_state to
    the same path removes it.  Before, such files stayed forever."""
    if not hasattr(signal, "SIGKILL"):
        pytest.skip("no SIGKILL on this platform")
    target = tmp_path / "state.npz"
    code = ("import sys, numpy as np; from minidl.serialization import save_state\n"
            "a = np.ones(64 * 2**20, np.float32)\n"
            "print('ready', flush=True)\n"
            f"save_state({str(target)!r}, {{'w': a}})\n"
            "print('done', flush=True)\n")
    env = dict(os.environ, PYTHONPATH=REPO)
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 60
        while not _temporaries(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.001)
        time.sleep(0.02)  # let the write get going
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(60)
        proc.stdout.close()
    if target.exists():
        pytest.skip("the save finished before SIGKILL landed (a very fast disk); the simulated "
                    "leftover test covers the cleanup")
    left = _temporaries(tmp_path)
    assert len(left) == 1 and left[0].startswith(f"state.npz.pid{proc.pid}."), left
    save_state(target, {"w": np.zeros(2)})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.npz"]
    assert load_state(target)["w"].tolist() == [0.0, 0.0]


def test_a_leftover_of_a_dead_process_is_removed_and_a_live_ones_kept(tmp_path):
    pid = _dead_pid()
    dead = tmp_path / f"state.npz.pid{pid}.abc123.tmp.npz"
    live = tmp_path / f"state.npz.pid{os.getpid()}.xyz789.tmp.npz"  # a save in progress
    other = tmp_path / f"other.npz.pid{pid}.abc123.tmp.npz"  # another target's: not ours
    for p in (dead, live, other):
        p.write_bytes(b"\0" * 1000)
    save_state(tmp_path / "state.npz", {"w": np.ones(2)})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["state.npz", live.name, other.name])
    assert remove_stale_temporaries(tmp_path / "other.npz") == [other]


def _npz_with_header(path, shape, data=b"\0" * 12):
    """An .npz whose entry 'w' has a float32 header claiming ``shape`` but holds ``data``."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False,
                                               "shape": shape})
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("w.npy", buf.getvalue() + data)


def test_an_entry_whose_header_claims_40_gb_is_a_clear_error(tmp_path):
    """Issue 21 item 9: a header claiming 40 GB raised a bare MemoryError (or tried to
    allocate it); now the error names the file, the entry and the sizes, before allocating."""
    path = tmp_path / "huge.npz"
    _npz_with_header(path, (100_000, 100_000))
    with pytest.raises(ValueError, match=r"load_state: '.*huge.npz' entry 'w' claims shape "
                                         r"\(100000, 100000\) float32 \(40 GB\) but holds only "
                                         r"12 bytes of data: the file is corrupt or truncated"):
        load_state(path)
    _npz_with_header(path, (3,))  # a header that matches its data still loads
    assert load_state(path)["w"].tolist() == [0.0, 0.0, 0.0]
