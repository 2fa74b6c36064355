"""minidl.torchfile: torch.save checkpoints read without PyTorch -- every dtype, offsets,
strides and shared storages exactly as torch.load reads them, the legacy format, hostile
pickles refused with nothing run, and malformed or fuzzed files refused with TorchFileError."""
import io
import os
import pickle
import sys
import zipfile

import numpy as np
import pytest

from minidl.torchfile import TorchFileError, load, load_bytes

from _pth_writer import pth_zip, state_pickle, tensor_pickle

W = np.arange(24, dtype="<f4") - 5.5
HALF = np.float16([1.5, -2, 65504])
BF_VALUES = np.array([1.0, -3.5, 0.15625], np.float32)   # exact in bfloat16
DBL = np.linspace(0, 1, 6)


def sample(byteorder="little"):
    """A hand-written checkpoint and the arrays it must read as."""
    tensors = {"conv.weight": tensor_pickle("FloatStorage", "0", 24, 0, (2, 3, 4), (12, 4, 1)),
               # a strided view at an offset into the same storage (a transpose of a slice)
               "conv.view": tensor_pickle("FloatStorage", "0", 24, 1, (3, 2), (4, 12)),
               "half": tensor_pickle("HalfStorage", "1", 3, 0, (3,), (1,)),
               "bf": tensor_pickle("BFloat16Storage", "2", 3, 0, (3,), (1,)),
               "dbl": tensor_pickle("DoubleStorage", "3", 6, 2, (2, 2), (1, 2)),
               "count": tensor_pickle("LongStorage", "4", 1, 0, (), ()),
               "empty": tensor_pickle("FloatStorage", "5", 0, 0, (0, 3), (3, 1))}
    e = "<" if byteorder == "little" else ">"
    bf = (BF_VALUES.view(np.uint32) >> 16).astype(e + "u2")
    storages = {"0": W.astype(e + "f4").tobytes(), "1": HALF.astype(e + "f2").tobytes(),
                "2": bf.tobytes(), "3": DBL.astype(e + "f8").tobytes(),
                "4": np.array([7], e + "i8").tobytes(), "5": b""}
    expect = {"conv.weight": W.reshape(2, 3, 4),
              "conv.view": np.array([[W[1 + 4 * i + 12 * j] for j in range(2)]
                                     for i in range(3)]),
              "half": HALF, "bf": BF_VALUES, "dbl": np.array([[DBL[2], DBL[4]],
                                                              [DBL[3], DBL[5]]]),
              "count": np.array(7, np.int64), "empty": np.zeros((0, 3), np.float32)}
    return pth_zip(state_pickle(tensors), storages, byteorder=byteorder), expect


@pytest.mark.parametrize("byteorder", ["little", "big"])
def test_every_dtype_offset_stride_and_shared_storage(byteorder):
    data, expect = sample(byteorder)
    out = load_bytes(data)
    assert list(out) == list(expect)
    for k, v in expect.items():
        assert out[k].dtype == v.dtype and out[k].shape == v.shape, k
        np.testing.assert_array_equal(out[k], v, err_msg=k)
        assert out[k].flags.c_contiguous and out[k].flags.writeable, k
    out["conv.weight"][0, 0, 1] = 99.0                # a copy, not a view of the file
    assert out["conv.view"][0, 0] == W[1]


def evil_pickle(target):
    class Evil:
        def __reduce__(self):
            return (os.system, (f"echo pwned > {target}",))
    return pickle.dumps({"fc.weight": Evil()}, protocol=2)


def test_a_pickle_that_calls_os_system_is_refused_and_nothing_runs(tmp_path, capsys):
    target = tmp_path / "pwned.txt"
    path = tmp_path / "evil.pth"
    path.write_bytes(pth_zip(evil_pickle(target), {}))
    with pytest.raises(TorchFileError, match=r"evil.pth.*refused global (posix|os)\.system"):
        load(path)
    from minidl.convert import main
    assert main(["torchvision", str(path), str(tmp_path / "out.npz")]) == 1
    err = capsys.readouterr().err
    assert "refused global" in err and "evil.pth" in err and err.count("\n") == 1
    assert not target.exists() and not (tmp_path / "out.npz").exists()


@pytest.mark.parametrize("pkl, message", [
    (b"\x80\x02cbuiltins\neval\nX\x04\x00\x00\x001+1\x85R.", r"refused global builtins.eval"),
    (b"\x80\x02ctorch.nn\nModule\n)\x81.", r"refused global torch.nn.Module"),
    (b"\x80\x02(i__main__\nEvil\n.", r"refused pickle opcode b'i'"),          # INST
    (b"\x80\x02\x82\x01.", r"refused pickle opcode b'\\x82'"),                # EXT1
    (b"\x80\x02(c__builtin__\nobject\no.", r"refused global __builtin__.object"),
    (b"\x80\x04\x8c\x02os\x8c\x06system\x93.", r"refused global os.system"),  # STACK_GLOBAL
], ids=["eval", "model-class", "INST", "EXT1", "OBJ", "STACK_GLOBAL"])
def test_other_globals_and_object_opcodes_are_refused(pkl, message):
    with pytest.raises(TorchFileError, match=message):
        load_bytes(pth_zip(pkl, {}), where="f.pth")


def replace_storage(key, raw):
    data, _ = sample()
    src = zipfile.ZipFile(io.BytesIO(data))
    storages = {n.rsplit("/", 1)[1]: src.read(n) for n in src.namelist() if "/data/" in n}
    if raw is None:
        del storages[key]
    else:
        storages[key] = raw
    return pth_zip(src.read("archive/data.pkl"), storages)


@pytest.mark.parametrize("data, message", [
    (b"hello", r"not a PyTorch checkpoint"),
    (sample()[0][:300], r"corrupted or truncated zip"),
    (sample()[0][:-10], r"corrupted or truncated zip"),
    (replace_storage("3", None), r"storage '3' is missing \(archive/data/3\)"),
    (replace_storage("3", b"\0" * 40), r"storage '3' holds 40 bytes, expected 6 x 8"),
    (pth_zip(state_pickle({"w": tensor_pickle("FloatStorage", "0", 4, 2, (3,), (1,))}),
             {"0": b"\0" * 16}), r"reaches element 4 of storage '0', which has 4"),
    (pth_zip(state_pickle({"w": tensor_pickle("FloatStorage", "0", 4, 0, (2,), (1, 1))}),
             {"0": b"\0" * 16}), r"size \(2,\) and stride \(1, 1\) differ"),
    (pth_zip(b"\x80\x02}q\x00(X\x01\x00\x00\x00a", {}), r"pickle truncated"),
    (pth_zip(state_pickle({"w": tensor_pickle("FloatStorage", "0", 4, 0, (2,), (1,))})
             .replace(b"ctorch\nFloatStorage\n", b"X\x03\x00\x00\x00f4x"), {"0": b"\0" * 16}),
     r"unexpected persistent id \('storage', 'f4x'"),
    (pth_zip(b"\x80\x02]q\x00h\x00a.", {}), r"nested more than 64 deep"),   # a list in itself
    (b"PK\x03\x04" + b"\0" * 100, r"corrupted or truncated zip"),
], ids=["garbage", "truncated-head", "truncated-tail", "missing-storage", "storage-size",
        "past-the-end", "stride-rank", "pickle-truncated", "storage-type", "self-referencing",
        "bad-zip"])
def test_malformed_files_are_refused_with_the_reason(data, message):
    with pytest.raises(TorchFileError, match=r"ckpt.pth: .*" + message):
        load_bytes(data, where="ckpt.pth")


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no such file: .*nope.pth"):
        load(tmp_path / "nope.pth")


def test_fuzzed_archives_either_load_or_raise_torchfile_error():
    """Byte flips anywhere and truncations of a valid archive: only TorchFileError."""
    rng = np.random.default_rng(0)
    good, _ = sample()
    accepted = 0
    for trial in range(400):
        data = bytearray(good)
        if trial % 2:
            data = data[:int(rng.integers(0, len(data)))]
        else:
            for i in rng.integers(0, len(data), size=rng.integers(1, 4)):
                data[i] = int(rng.integers(0, 256))
        try:
            out = load_bytes(bytes(data))
        except TorchFileError:
            continue
        accepted += 1
        assert all(isinstance(v, np.ndarray) for v in out.values())
    assert accepted < 400


def test_fuzzed_pickles_either_load_or_raise_torchfile_error():
    """The pickle itself mutated and re-zipped with a valid CRC, so that the opcode machine
    (not the zip's checksum) meets every flip, deletion and insertion."""
    rng = np.random.default_rng(1)
    good, _ = sample()
    src = zipfile.ZipFile(io.BytesIO(good))
    pkl = src.read("archive/data.pkl")
    storages = {n.rsplit("/", 1)[1]: src.read(n) for n in src.namelist() if "/data/" in n}
    accepted = 0
    for trial in range(1500):
        p = bytearray(pkl)
        i = int(rng.integers(0, len(p)))
        if trial % 3 == 0:
            p[i] = int(rng.integers(0, 256))
        elif trial % 3 == 1:
            del p[i:i + int(rng.integers(1, 4))]
        else:
            p[i:i] = bytes([int(rng.integers(0, 256))])
        try:
            out = load_bytes(pth_zip(bytes(p), storages))
        except TorchFileError:
            continue
        accepted += 1
        assert isinstance(out, (dict, list, tuple, int, float, str, bytes, np.ndarray,
                                type(None), set, frozenset))
    assert 0 < accepted < 1500


# ------------------------------------------------------------- files written by torch.save

def torch_cases(torch):
    base = torch.arange(60, dtype=torch.float64).reshape(6, 10) / 7
    state = {"f32": torch.randn(4, 3, 3, 3), "f16": torch.randn(5).half(),
             "bf16": torch.randn(7).bfloat16(), "f64": base,
             "i64": torch.tensor(3), "view": base[1:5, 2:9:3].t(),      # offset and strides
             "shared": base[2], "empty": torch.zeros(0, 4)}
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    return {"dict": state, "module": module.state_dict(),
            "wrapped": {"state_dict": module.state_dict(), "epoch": 3, "lr": 0.1,
                        "arch": "x", "flags": [True, None], "shape": (1, 2)}}


def assert_same(ours, ref, torch, where=""):
    if isinstance(ref, torch.Tensor):
        expect = (ref.float() if ref.dtype == torch.bfloat16 else ref).numpy()
        assert ours.dtype == expect.dtype and ours.shape == expect.shape, where
        np.testing.assert_array_equal(ours, expect, err_msg=where)
    elif isinstance(ref, dict):
        assert list(ours) == list(ref), where
        for k in ref:
            assert_same(ours[k], ref[k], torch, f"{where}.{k}")
    elif isinstance(ref, (list, tuple)):
        assert type(ours) is type(ref) and len(ours) == len(ref), where
        for i, (a, b) in enumerate(zip(ours, ref)):
            assert_same(a, b, torch, f"{where}[{i}]")
    else:
        assert ours == ref, where


@pytest.mark.parametrize("how", ["zip", "zip-protocol-4", "legacy"])
def test_torch_save_files_read_exactly_as_torch_loads_them(tmp_path, monkeypatch, how):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    kw = {"zip": {}, "zip-protocol-4": {"pickle_protocol": 4},
          "legacy": {"_use_new_zipfile_serialization": False}}[how]
    refs = {}
    for name, obj in torch_cases(torch).items():
        torch.save(obj, tmp_path / f"{name}.pth", **kw)
        # the reference: torch's full unpickler (its weights_only one cannot read protocol
        # 4's FRAME), safe on a file this test just wrote
        refs[name] = torch.load(tmp_path / f"{name}.pth", weights_only=False)
    monkeypatch.setitem(sys.modules, "torch", None)
    for name, ref in refs.items():
        assert_same(load(tmp_path / f"{name}.pth"), ref, torch, name)
