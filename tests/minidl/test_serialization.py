"""minidl.serialization: .npz state files without pickle -- round trip from any backend,
atomic writes, and clear errors for bad paths, keys, values and files."""
from collections import OrderedDict

import numpy as np
import pytest

from minidl import backend as B
from minidl.serialization import FORMAT_VERSION, load_state, save_state


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
