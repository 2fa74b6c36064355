"""Checksums of data files: MD5 of a file or of its gzip payload (what data sets publish),
or an expected SHA-256 (full, or the hex prefix a publisher put in a file name), and
:func:`verify_file`, which raises :class:`ChecksumError` naming the file, the digests found and
the ones expected.  Used by :func:`minidl.data.download.fetch` before any file is used.
"""
from __future__ import annotations

import gzip
import hashlib
import zlib
from collections.abc import Iterable

from minidl.data.idx import is_gzip

__all__ = ["verify_file", "mismatch", "file_md5", "file_sha256", "payload_md5", "SHA256",
           "ChecksumError"]


class ChecksumError(ValueError):
    """A file's MD5 (and its payload's MD5) is not one of the accepted checksums."""


def _md5():
    try:
        return hashlib.md5(usedforsecurity=False)
    except TypeError:  # pragma: no cover - Python builds without the keyword
        return hashlib.md5()


def file_md5(path) -> str:
    """The hex MD5 of the bytes of the file at ``path``."""
    h = _md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_sha256(path) -> str:
    """The hex SHA-256 of the bytes of the file at ``path``."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class SHA256:
    """An expected SHA-256: the full 64 hex digits, or a prefix of at least 8 (what torchvision
    puts in its file names, ``resnet50-0676ba61.pth``), which only checks that many digits.

    ``mismatch(path)`` is None when the file's digest matches, else what was found."""

    def __init__(self, digest: str):
        digest = str(digest).lower()
        if not 8 <= len(digest) <= 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(f"SHA256: expected 8 to 64 hex digits, got {digest!r}")
        self.digest = digest
        self.full = len(digest) == 64

    def mismatch(self, path) -> str | None:
        found = file_sha256(path)
        return None if found.startswith(self.digest) else f"SHA-256 {found}"

    def expected(self) -> str:
        return f"SHA-256 {self.digest}" + ("" if self.full else "... (a prefix)")

    def __repr__(self):
        return f"SHA256({self.digest!r})"


def payload_md5(path) -> str | None:
    """The hex MD5 of the uncompressed content of a gzip file; None if ``path`` is not gzip.

    Raises
    ------
    ValueError
        The gzip stream is damaged (truncated, bad CRC).
    """
    with open(path, "rb") as f:
        if not is_gzip(f.read(2)):
            return None
    h = _md5()
    try:
        with gzip.open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{path}: damaged gzip data: {exc}") from exc
    return h.hexdigest()


def _md5_mismatch(path, accepted: set[str]) -> str | None:
    """None when ``path`` (or its gzip payload) has an accepted MD5, else what was found."""
    found = file_md5(path)
    if found in accepted:
        return None
    try:
        payload = payload_md5(path)
    except ValueError as exc:
        return f"file MD5 {found}, and its gzip data is damaged ({exc.__cause__ or exc})"
    if payload in accepted:
        return None
    return f"file MD5 {found}" + (f", uncompressed payload MD5 {payload}" if payload else "")


def mismatch(path, md5s: Iterable[str] | None) -> tuple[str | None, str]:
    """``(found, expected)``: ``found`` is None when ``path`` passes ``md5s`` (as in
    :func:`verify_file`), else the digests found; ``expected`` says what was accepted."""
    if isinstance(md5s, SHA256):
        return md5s.mismatch(path), md5s.expected()
    accepted = {m.lower() for m in (md5s or ())}
    expected = (f"MD5 one of {sorted(accepted)} (of the file or of its uncompressed payload)")
    return (_md5_mismatch(path, accepted) if accepted else None), expected


def verify_file(path, md5s: Iterable[str] | None) -> None:
    """Check ``path`` against the accepted MD5s.

    Parameters
    ----------
    path : str or os.PathLike
    md5s : iterable of hex str, :class:`SHA256`, or None
        Accepted MD5s, of the file or of its uncompressed payload (None or empty accepts any
        file); or one expected SHA-256.

    Raises
    ------
    ChecksumError
        Neither digest is accepted (or the gzip stream is damaged); the message names the file,
        the digests found and the ones expected.
    """
    found, expected = mismatch(path, md5s)
    if found is not None:
        raise ChecksumError(f"{path}: checksum mismatch: got {found}; expected {expected}")
