"""minidl.safetensors: the format written and read by hand -- round trips, the exact byte
layout, and a header parser that rejects every malformed or truncated file with a
SafetensorsError (fuzzed)."""
import json
import struct

import numpy as np
import pytest

from minidl.safetensors import (SafetensorsError, load_bytes, load_file, parse_header,
                                save_bytes, save_file)


def sample():
    rng = np.random.default_rng(0)
    return {"conv.W": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
            "fc.b": rng.standard_normal(5), "count": np.array(7, dtype=np.int64),
            "mask": np.array([True, False]), "half": np.float16([1.5, -2]),
            "bytes": np.arange(5, dtype=np.uint8), "empty": np.zeros((0, 3), np.float32),
            "i32": np.arange(6, dtype=np.int32).reshape(2, 3)[:, ::2]}   # non-contiguous


def raw(header: dict, data: bytes = b"") -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def test_round_trip_keeps_names_order_dtypes_shapes_and_values(tmp_path):
    state = sample()
    save_file(state, tmp_path / "w.safetensors", metadata={"format": "minidl"})
    back = load_file(tmp_path / "w.safetensors")
    assert list(back) == list(state)
    for k, v in state.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape, k
        np.testing.assert_array_equal(back[k], v)
    assert parse_header((tmp_path / "w.safetensors").read_bytes())[1] == {"format": "minidl"}


def test_byte_layout_is_the_documented_one():
    data = save_bytes({"a": np.array([1.0, 2.0], np.float32)})
    (n,) = struct.unpack("<Q", data[:8])
    assert n % 8 == 0                                          # padded with spaces
    header = json.loads(data[8:8 + n])
    assert header == {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    assert data[8 + n:] == np.array([1.0, 2.0], "<f4").tobytes()


def test_reads_big_endian_free_bf16_as_float32():
    bits = (np.array([1.0, -3.5], np.float32).view(np.uint32) >> 16).astype("<u2")
    out = load_bytes(raw({"x": {"dtype": "BF16", "shape": [2], "data_offsets": [0, 4]}},
                         bits.tobytes()))
    np.testing.assert_array_equal(out["x"], [1.0, -3.5])
    assert out["x"].dtype == np.float32


GOOD = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
BAD_HEADERS = [
    ([1, 2], b"", r"header must be a JSON object"),
    ({"a": {"dtype": "F32", "shape": [2]}}, b"\0" * 8, r"exactly dtype, shape and data_off"),
    ({"a": {"dtype": "F31", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 8,
     r"unknown dtype 'F31'"),
    ({"a": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8,
     r"shape must be a list of non-negative ints"),
    ({"a": {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}}, b"\0" * 8,
     r"shape must be a list of non-negative ints"),
    ({"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, b"\0" * 8,
     r"data_offsets must be \[begin, end\]"),
    ({"a": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8,
     r"hold 8 bytes but F32 \[3\] needs 12"),
    (GOOD, b"\0" * 5, r"data ends at byte 8 but the buffer has only 5 bytes: truncated"),
    (GOOD, b"\0" * 12, r"4 bytes after the last tensor"),
    ({"a": GOOD["a"], "b": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}},
     b"\0" * 8, r"overlaps or leaves a hole"),
    ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8,
     r"starts at byte 4, expected 0"),
    ({"__metadata__": {"a": 1}}, b"", r"__metadata__ must be an object of strings"),
]


@pytest.mark.parametrize("header, data, message", BAD_HEADERS, ids=lambda v: str(v)[:30])
def test_malformed_headers_are_rejected_with_the_reason(header, data, message):
    with pytest.raises(SafetensorsError, match=message):
        load_bytes(raw(header, data))


def test_truncated_and_garbage_files(tmp_path):
    good = save_bytes(sample())
    with pytest.raises(SafetensorsError, match=r"too short for the 8-byte header length"):
        load_bytes(good[:5])
    with pytest.raises(SafetensorsError, match=r"runs past the end of the file"):
        load_bytes(good[:40])
    with pytest.raises(SafetensorsError, match=r"truncated"):
        load_bytes(good[:-3])
    with pytest.raises(SafetensorsError, match=r"exceeds the .*-byte limit"):
        load_bytes(struct.pack("<Q", 1 << 40) + b"{}")
    with pytest.raises(SafetensorsError, match=r"not valid UTF-8 JSON"):
        load_bytes(struct.pack("<Q", 4) + b"{\xff}x")
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(SafetensorsError, match=r"nested too deeply"):
        load_bytes(struct.pack("<Q", len(deep)) + deep)
    path = tmp_path / "bad.safetensors"
    path.write_bytes(good[:-1])
    with pytest.raises(SafetensorsError, match=r"bad.safetensors"):
        load_file(path)
    with pytest.raises(FileNotFoundError, match=r"no such file"):
        load_file(tmp_path / "missing.safetensors")


def test_writer_refuses_what_the_format_cannot_hold():
    with pytest.raises(TypeError, match=r"'x' has dtype complex128"):
        save_bytes({"x": np.zeros(2, complex)})
    with pytest.raises(ValueError, match=r"tensor names must be non-empty str"):
        save_bytes({"__metadata__": np.zeros(2)})


def test_fuzzed_files_either_load_or_raise_safetensors_error():
    """Random byte flips, truncations and header-length changes of a valid file: the parser
    never crashes with another exception, and anything it accepts is self-consistent."""
    rng = np.random.default_rng(0)
    good = bytearray(save_bytes(sample()))
    n = struct.unpack("<Q", bytes(good[:8]))[0]
    accepted = 0
    for trial in range(600):
        data = bytearray(good)
        kind = trial % 4
        if kind == 0:                                   # flip bytes inside the header
            for i in rng.integers(8, 8 + n, size=rng.integers(1, 4)):
                data[i] = int(rng.integers(0, 256))
        elif kind == 1:                                 # printable edits: digits, quotes
            for i in rng.integers(8, 8 + n, size=rng.integers(1, 3)):
                data[i] = ord(rng.choice(list('0123456789[]{}",:- ')))
        elif kind == 2:                                 # truncate anywhere
            data = data[:int(rng.integers(0, len(data)))]
        else:                                           # lie about the header length
            data[:8] = struct.pack("<Q", int(rng.integers(0, 2 * len(data))))
        try:
            out = load_bytes(bytes(data))
        except SafetensorsError:
            continue
        accepted += 1
        assert all(isinstance(v, np.ndarray) for v in out.values())
    assert accepted < 600
