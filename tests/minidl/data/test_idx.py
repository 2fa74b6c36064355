"""minidl.data.idx: round trips, and a clear error for every kind of damaged file."""
import gzip
import io

import numpy as np
import pytest

from minidl.data.idx import IDX_DTYPES, read_idx, write_idx

DTYPES = ["uint8", "int8", "int16", "int32", "float32", "float64"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip_every_dtype_raw_and_gzip(tmp_path, rng, dtype, suffix):
    a = (rng.standard_normal((3, 4, 5)) * 100).astype(dtype)
    path = tmp_path / f"a.idx{suffix}"
    write_idx(path, a)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")
    b = read_idx(path)
    assert b.dtype == np.dtype(dtype) and b.dtype.isnative
    assert b.shape == a.shape
    np.testing.assert_array_equal(b, a)
    assert b.flags.writeable and b.flags.c_contiguous


def test_round_trip_through_file_objects_and_non_native_input():
    a = np.arange(12, dtype=">i4").reshape(3, 4)
    buf = io.BytesIO()
    write_idx(buf, a, compress=True)
    b = read_idx(io.BytesIO(buf.getvalue()))
    assert b.dtype == np.dtype("int32") and b.dtype.isnative
    np.testing.assert_array_equal(b, a)


def test_header_layout_matches_the_mnist_specification(tmp_path):
    labels = np.array([5, 0, 4], np.uint8)
    write_idx(tmp_path / "l.idx", labels)
    raw = (tmp_path / "l.idx").read_bytes()
    assert raw == bytes([0, 0, 0x08, 1, 0, 0, 0, 3, 5, 0, 4])
    images = np.zeros((2, 28, 28), np.uint8)
    write_idx(tmp_path / "i.idx", images)
    assert (tmp_path / "i.idx").read_bytes()[:16] == bytes.fromhex("00000803 00000002 0000001c "
                                                                   "0000001c".replace(" ", ""))


def test_gzip_output_is_deterministic(tmp_path):
    a = np.arange(100, dtype=np.uint8)
    write_idx(tmp_path / "a.gz", a)
    write_idx(tmp_path / "b.gz", a)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()


def test_compression_is_detected_from_content_not_name(tmp_path):
    a = np.arange(10, dtype=np.uint8)
    write_idx(tmp_path / "plain.gz", a, compress=False)
    write_idx(tmp_path / "zipped.idx", a, compress=True)
    np.testing.assert_array_equal(read_idx(tmp_path / "plain.gz"), a)
    np.testing.assert_array_equal(read_idx(tmp_path / "zipped.idx"), a)


# --------------------------------------------------------------------------- damaged files

def _raw(a):
    buf = io.BytesIO()
    write_idx(buf, a, compress=False)
    return buf.getvalue()


def _write(tmp_path, data, name="bad.idx"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_bad_magic_is_rejected(tmp_path):
    data = bytearray(_raw(np.arange(4, dtype=np.uint8)))
    data[0] = 0x42
    with pytest.raises(ValueError, match=r"bad\.idx: not an IDX file: expected magic bytes "
                                         r"00 00, found 42 00"):
        read_idx(_write(tmp_path, bytes(data)))


def test_unknown_dtype_code_is_rejected(tmp_path):
    data = bytearray(_raw(np.arange(4, dtype=np.uint8)))
    data[2] = 0x0A
    with pytest.raises(ValueError, match=r"unknown IDX type code 0x0A; expected one of "
                                         r"0x08 \(uint8\)"):
        read_idx(_write(tmp_path, bytes(data)))


def test_zero_dimensions_and_short_header_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="declares 0 dimensions"):
        read_idx(_write(tmp_path, bytes([0, 0, 8, 0])))
    with pytest.raises(ValueError, match="expected a 4-byte header, found only 2 bytes"):
        read_idx(_write(tmp_path, b"\x00\x00"))
    with pytest.raises(ValueError, match=r"truncated IDX header: 3 dimensions need 16 header "
                                         r"bytes, found 10"):
        read_idx(_write(tmp_path, bytes([0, 0, 8, 3, 0, 0, 0, 1, 0, 0])))


def test_truncated_payload_is_an_error_not_a_short_array(tmp_path):
    data = _raw(np.zeros((10, 28, 28), np.uint8))
    with pytest.raises(ValueError, match=r"truncated IDX payload: the header declares shape "
                                         r"\(10, 28, 28\) of uint8 = 7840 bytes, but 7839 bytes"):
        read_idx(_write(tmp_path, data[:-1]))


def test_extra_bytes_are_an_error(tmp_path):
    data = _raw(np.zeros(5, np.int16)) + b"\x00\x01"
    with pytest.raises(ValueError, match=r"over-long IDX payload: .* \(5,\) of int16 = 10 "
                                         r"bytes, but 12 bytes"):
        read_idx(_write(tmp_path, data))


def test_truncated_gzip_is_an_error(tmp_path):
    data = gzip.compress(_raw(np.arange(1000, dtype=np.int32)))
    with pytest.raises(ValueError, match=r"bad\.gz: damaged gzip data .* truncated or corrupt"):
        read_idx(_write(tmp_path, data[: len(data) // 2], "bad.gz"))


def test_gzip_with_a_flipped_byte_is_an_error(tmp_path):
    data = bytearray(gzip.compress(_raw(np.arange(1000, dtype=np.int32)), mtime=0))
    data[-6] ^= 0xFF  # inside the CRC-32 / size trailer
    with pytest.raises(ValueError, match="damaged gzip data"):
        read_idx(_write(tmp_path, bytes(data), "bad.gz"))


def test_gzip_of_a_truncated_idx_is_an_error(tmp_path):
    data = gzip.compress(_raw(np.zeros((4, 3), np.uint8))[:-2])
    with pytest.raises(ValueError, match="truncated IDX payload"):
        read_idx(_write(tmp_path, data, "bad.gz"))


def test_fuzzed_files_never_return_a_wrong_array(tmp_path):
    """Random corruptions of a valid file either raise ValueError or decode to an array whose
    size matches its header exactly (a flipped payload byte cannot be detected)."""
    fuzz = np.random.default_rng(7)
    good = _raw(np.arange(60, dtype=np.uint8).reshape(3, 4, 5))
    path = tmp_path / "fuzz.idx"
    for _ in range(300):
        data = bytearray(good)
        kind = fuzz.integers(3)
        if kind == 0:
            data[fuzz.integers(len(data))] = fuzz.integers(256)
        elif kind == 1:
            del data[fuzz.integers(len(data)):]
        else:
            data += bytes(fuzz.integers(256, size=fuzz.integers(1, 5)).tolist())
        path.write_bytes(bytes(data))
        try:
            a = read_idx(path)
        except ValueError as exc:
            assert "fuzz.idx" in str(exc)
            continue
        code, ndim = data[2], data[3]
        assert a.dtype == IDX_DTYPES[code].newbyteorder("=")
        assert a.ndim == ndim and 4 + 4 * ndim + a.nbytes == len(data)


def test_bad_arguments_name_what_is_wrong(tmp_path):
    with pytest.raises(TypeError, match="array dtype must be one of uint8.* got int64"):
        write_idx(tmp_path / "x.idx", np.arange(3, dtype=np.int64))
    with pytest.raises(ValueError, match="array must have 1 to 255 dimensions.* got 0"):
        write_idx(tmp_path / "x.idx", np.uint8(3))
    with pytest.raises(TypeError, match="source must be a path .* got int"):
        read_idx(3)
    with pytest.raises(TypeError, match="opened in binary mode"):
        read_idx(io.StringIO("text"))
