"""Reading and writing the IDX format of MNIST and Fashion-MNIST.

An IDX file is a 4-byte magic number, the dimensions, then the data, all big-endian::

    bytes 0-1   0x00 0x00
    byte  2     the element type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                0x0D float32, 0x0E float64
    byte  3     the number of dimensions, ndim
    4*ndim      the size of each dimension, unsigned 32-bit big-endian
    ...         prod(dims) elements, big-endian, C order

The files are usually gzip-compressed (``*.gz``); :func:`read_idx` detects this from the content
(the gzip magic ``1f 8b``), not from the name.  Every inconsistency -- a bad magic or type code, a
payload shorter or longer than the header declares, a damaged gzip stream -- raises a
:class:`ValueError` that names the file and says what was expected and what was found.
"""
from __future__ import annotations

import gzip
import io
import math
import os
import zlib

import numpy

__all__ = ["read_idx", "write_idx", "IDX_DTYPES", "is_gzip"]

#: IDX type code -> big-endian NumPy dtype.
IDX_DTYPES: dict[int, numpy.dtype] = {
    0x08: numpy.dtype("u1"),
    0x09: numpy.dtype("i1"),
    0x0B: numpy.dtype(">i2"),
    0x0C: numpy.dtype(">i4"),
    0x0D: numpy.dtype(">f4"),
    0x0E: numpy.dtype(">f8"),
}
_CODES = {dt.newbyteorder("="): code for code, dt in IDX_DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


def is_gzip(head: bytes) -> bool:
    """True when ``head`` (the first bytes of a file) starts with the gzip magic number."""
    return head[:2] == _GZIP_MAGIC


def _source_name(source) -> str:
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    return str(getattr(source, "name", None) or f"<{type(source).__name__}>")


def _read_bytes(source) -> bytes:
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            return f.read()
    if not hasattr(source, "read"):
        raise TypeError("source must be a path (str or os.PathLike) or a binary file object, "
                        f"got {type(source).__name__}")
    data = source.read()
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"source must be opened in binary mode ('rb'); its read() returned "
                        f"{type(data).__name__}")
    return bytes(data)


def _gunzip(data: bytes, name: str) -> bytes:
    try:
        return gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise ValueError(
            f"{name}: damaged gzip data ({len(data)} compressed bytes): {exc}. The file is "
            "truncated or corrupt; delete it and download it again.") from exc


def _parse_header(data, name: str) -> tuple[numpy.dtype, tuple[int, ...], int]:
    """Validate the IDX header of ``data``; return (big-endian dtype, shape, header size)."""
    if len(data) < 4:
        raise ValueError(f"{name}: not an IDX file: expected a 4-byte header, found only "
                         f"{len(data)} bytes")
    if data[0] != 0 or data[1] != 0:
        raise ValueError(f"{name}: not an IDX file: expected magic bytes 00 00, found "
                         f"{data[0]:02x} {data[1]:02x}")
    code, ndim = data[2], data[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X} ({IDX_DTYPES[c].name})" for c in IDX_DTYPES)
        raise ValueError(f"{name}: unknown IDX type code 0x{code:02X}; expected one of {known}")
    if ndim == 0:
        raise ValueError(f"{name}: IDX header declares 0 dimensions; expected at least 1")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{name}: truncated IDX header: {ndim} dimensions need {header} header "
                         f"bytes, found {len(data)}")
    shape = tuple(int(d) for d in numpy.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    return IDX_DTYPES[code], shape, header


def read_idx(source) -> numpy.ndarray:
    """Read an IDX file, gzip-compressed or raw.

    Parameters
    ----------
    source : str, os.PathLike or binary file object
        The file.  Compression is detected from the content (gzip magic), not from the name.

    Returns
    -------
    numpy.ndarray
        A new, writable host array in native byte order with the header's shape and type
        (MNIST images: uint8 (N, 28, 28); labels: uint8 (N,)).

    Raises
    ------
    ValueError
        Bad magic, unknown type code, zero dimensions, a payload shorter or longer than the
        header declares, or a damaged gzip stream (bad CRC, truncated) -- the message names the
        file and gives the expected and the found values.
    TypeError
        ``source`` is neither a path nor a binary file object.
    """
    name = _source_name(source)
    data = _read_bytes(source)
    if is_gzip(data):
        data = _gunzip(data, name)
    dtype, shape, header = _parse_header(data, name)
    expected = math.prod(shape) * dtype.itemsize
    found = len(data) - header
    if found != expected:
        what = "truncated" if found < expected else "over-long"
        raise ValueError(
            f"{name}: {what} IDX payload: the header declares shape {shape} of "
            f"{dtype.newbyteorder('=').name} = {expected} bytes, but {found} bytes follow the "
            f"{header}-byte header. The file is damaged; delete it and download it again.")
    array = numpy.frombuffer(memoryview(data)[header:], dtype=dtype).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)


def write_idx(target, array, compress: bool | None = None) -> None:
    """Write ``array`` as an IDX file (the inverse of :func:`read_idx`).

    Parameters
    ----------
    target : str, os.PathLike or binary file object
    array : array_like
        uint8, int8, int16, int32, float32 or float64, at least 1-D, at most 255 dimensions,
        each smaller than 2**32.
    compress : bool or None
        gzip the file; None (default) compresses when ``target`` is a path ending in ``.gz``.
        The gzip header carries no time stamp, so equal arrays give equal files.

    Raises
    ------
    TypeError
        ``array`` has a type IDX cannot store.
    ValueError
        ``array`` is 0-D, has more than 255 dimensions, or a dimension >= 2**32.
    """
    array = numpy.asarray(array)
    native = array.dtype.newbyteorder("=") if array.dtype.byteorder not in "|=" else array.dtype
    if native not in _CODES:
        raise TypeError(f"array dtype must be one of uint8, int8, int16, int32, float32, "
                        f"float64 to be written as IDX, got {array.dtype}")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"array must have 1 to 255 dimensions to be written as IDX, got "
                         f"{array.ndim}")
    if any(d >= 2**32 for d in array.shape):
        raise ValueError(f"array dimensions must be < 2**32 for IDX, got shape {array.shape}")
    code = _CODES[native]
    header = bytes([0, 0, code, array.ndim]) + numpy.asarray(array.shape, ">u4").tobytes()
    payload = numpy.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    data = header + payload
    is_path = isinstance(target, (str, os.PathLike))
    if compress is None:
        compress = is_path and os.fspath(target).endswith(".gz")
    if compress:
        buf = io.BytesIO()
        with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz:
            gz.write(data)
        data = buf.getvalue()
    if is_path:
        with open(target, "wb") as f:
            f.write(data)
    else:
        target.write(data)
