"""Finding data files locally, or downloading them from mirrors, always checksum-verified.

:func:`fetch` looks for a file, in this order,

1. in the folder given as ``data_dir`` (the file directly in it, or under ``<subdir>/``),
2. in ``$MINIDL_DATA/<subdir>/``,
3. in the per-user cache ``<cache>/<subdir>/``, where ``<cache>`` is ``$MINIDL_CACHE``, else
   ``$XDG_CACHE_HOME/minidl``, else ``~/.cache/minidl`` (see :func:`default_cache_dir`),

and otherwise downloads it into the cache from each mirror in turn until one works: streamed in
chunks with a progress bar, written to a temporary file beside the target and moved into place
with ``os.replace`` only once complete and verified, so an interrupted or corrupt download never
leaves a file that looks valid.

Checksums are MD5s (the ones data sets publish).  A file is accepted when the MD5 of the file
itself, or -- for a gzip file -- the MD5 of its uncompressed payload, is in the accepted set; so
re-compressed copies and uncompressed copies of the same data are accepted too.  Other files
(model weights, :mod:`minidl.models.hub`) pass a :class:`~minidl.data.checksums.SHA256`
instead (``checksum=``): the full digest, or the hex prefix a publisher put in the file name.  A
local file that fails the check is an error (:class:`~minidl.data.checksums.ChecksumError`),
never used.  When nothing is found and
every mirror fails, one :class:`DatasetNotFoundError` lists every place tried and why it failed.

Checksums: :mod:`minidl.data.checksums`.  Only the standard library is used
(``urllib.request``, with a timeout).
"""
from __future__ import annotations

import contextlib
import http.client
import os
import pathlib
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence

from minidl.data.checksums import ChecksumError, mismatch, verify_file
from minidl.progress import ProgressBar

__all__ = ["fetch", "default_cache_dir", "DatasetNotFoundError", "DATA_ENV_VAR",
           "CACHE_ENV_VAR"]

DATA_ENV_VAR = "MINIDL_DATA"
CACHE_ENV_VAR = "MINIDL_CACHE"
DEFAULT_TIMEOUT = 30.0  # seconds, per network operation
CHUNK_SIZE = 1 << 16
USER_AGENT = "minidl-data/0.1 (+https://github.com/; urllib)"


class DatasetNotFoundError(FileNotFoundError):
    """A data file was found nowhere locally and could not be downloaded.

    Attributes
    ----------
    filename : str, the (first) file that was looked for.
    tried : list of (place, reason) pairs: every folder looked in and URL tried, in order.
    missing : list of str, every missing file when several were needed (else [filename]).
    """

    def __init__(self, message: str, filename: str = "", tried=(), missing=()):
        super().__init__(message)
        self.filename = filename
        self.tried = list(tried)
        self.missing = list(missing) or ([filename] if filename else [])

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class _IncompleteDownload(OSError):
    """The server closed the connection before sending the announced Content-Length."""



# --------------------------------------------------------------------------- places

def default_cache_dir() -> pathlib.Path:
    """The per-user download cache: ``$MINIDL_CACHE``, else ``$XDG_CACHE_HOME/minidl``, else
    ``~/.cache/minidl``."""
    if os.environ.get(CACHE_ENV_VAR):
        return pathlib.Path(os.environ[CACHE_ENV_VAR]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return pathlib.Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "minidl"
    return pathlib.Path.home() / ".cache" / "minidl"


def _candidates(filename: str, folder: pathlib.Path) -> list[pathlib.Path]:
    """``folder/filename`` and, for ``x.gz``, the uncompressed ``folder/x`` too."""
    names = [filename]
    if filename.endswith(".gz"):
        names.append(filename[:-3])
    return [folder / n for n in names]


def _local_folders(subdir: str, data_dir, cache: pathlib.Path) -> list[tuple[str, object]]:
    """(label, folder or None-with-reason) in search order."""
    folders: list[tuple[str, object]] = []
    if data_dir is not None:
        d = pathlib.Path(data_dir).expanduser()
        folders += [("data_dir", d), ("data_dir", d / subdir)]
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        folders.append((f"${DATA_ENV_VAR}", pathlib.Path(env).expanduser() / subdir))
    else:
        folders.append((f"${DATA_ENV_VAR}", None))
    folders.append(("cache", cache / subdir))
    return folders


def _find_local(filename: str, md5s, folders, tried: list) -> pathlib.Path | None:
    for label, folder in folders:
        if folder is None:
            tried.append((label, "not set"))
            continue
        for path in _candidates(filename, folder):
            if path.is_file():
                try:
                    verify_file(path, md5s)
                except ChecksumError as exc:
                    raise ChecksumError(
                        f"{exc}.\nThe local file {path} (found via {label}) is damaged or is "
                        "not the expected data set. Delete or replace it; it will then be "
                        "looked for elsewhere or downloaded again.") from exc
                return path
        tried.append((str(folder / filename), "not found"))
    return None


# --------------------------------------------------------------------------- download

def _url(mirror: str, filename: str) -> str:
    return mirror if mirror.endswith(filename) else mirror.rstrip("/") + "/" + filename


def _content_length(response) -> int | None:
    value = response.headers.get("Content-Length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _stream_to(response, out, total: int | None, desc: str, progress: bool, stream) -> int:
    """Copy ``response`` into the open file ``out`` in chunks; return the bytes written."""
    written = 0
    with ProgressBar(total=total, desc=desc, unit="B", stream=stream, enabled=progress) as bar:
        while True:
            chunk = response.read(CHUNK_SIZE)
            if not chunk:
                break
            out.write(chunk)
            written += len(chunk)
            bar.update(len(chunk))
    return written


def _download_one(url: str, dest: pathlib.Path, md5s, timeout: float, progress: bool,
                  stream, connected=lambda: None) -> None:
    """Download ``url`` to ``dest`` atomically and verified; raise on any failure.
    ``connected()`` is called once the server has answered, before the bytes flow.

    The bytes go to a temporary file in ``dest``'s folder, which is removed on every failure
    and renamed over ``dest`` (``os.replace``) only after the checksum passes.
    """
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = pathlib.Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            with contextlib.closing(urllib.request.urlopen(request, timeout=timeout)) as resp:
                connected()
                total = _content_length(resp)
                written = _stream_to(resp, out, total, dest.name, progress, stream)
        if total is not None and written != total:
            raise _IncompleteDownload(f"connection closed early: received {written} of {total} "
                                      "bytes")
        found, expected = mismatch(tmp, md5s)
        if found is not None:
            raise ChecksumError(f"the downloaded file failed the checksum: got {found}; "
                                f"expected {expected}")
        os.replace(tmp, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"cannot connect: {exc.reason}"
    if isinstance(exc, (ChecksumError, _IncompleteDownload)):
        return str(exc)
    if isinstance(exc, http.client.IncompleteRead):
        return (f"connection closed early: received {len(exc.partial)} more bytes, "
                f"{exc.expected} were still expected")
    return f"{type(exc).__name__}: {exc}"


def _remove_if_empty(folders: list[pathlib.Path]) -> None:
    """rmdir each folder (deepest first) that is still empty; keep any that is not."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (another download, another file), or gone
            return


def _download(filename: str, mirrors: Sequence[str], dest_dir: pathlib.Path, md5s,
              timeout: float, progress: bool, stream, tried: list) -> pathlib.Path | None:
    """Download into ``dest_dir``; the folders this call created are removed again if every
    mirror fails and they stayed empty (no empty cache folder is left behind offline)."""
    created = [p for p in (dest_dir, *dest_dir.parents) if not p.exists()]
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        tried.append((str(dest_dir), f"cannot create the cache folder: {exc}"))
        return None
    try:
        got = _download_from_mirrors(filename, mirrors, dest_dir, md5s, timeout, progress,
                                     stream, tried)
    finally:  # on success the folder holds the file: rmdir fails and keeps it
        _remove_if_empty(created)
    return got


def _download_from_mirrors(filename: str, mirrors: Sequence[str], dest_dir: pathlib.Path, md5s,
                           timeout: float, progress: bool, stream, tried: list
                           ) -> pathlib.Path | None:
    dest = dest_dir / filename
    for mirror in mirrors:
        url = _url(mirror, filename)
        started = []

        def connected(url=url, started=started):
            # only a mirror that answers gets a line: offline, the final error alone lists
            # every mirror tried and why it failed
            started.append(True)
            if progress:
                print(f"downloading {url} -> {dest}", file=stream, flush=True)

        try:
            _download_one(url, dest, md5s, timeout, progress, stream, connected)
            return dest
        except (OSError, ValueError, http.client.HTTPException) as exc:
            # URLError, HTTPError, timeouts, resets are OSErrors; ChecksumError a ValueError
            tried.append((url, _reason(exc)))
            if progress and started:
                print(f"  failed: {_reason(exc)}", file=stream, flush=True)
    return None


# --------------------------------------------------------------------------- fetch

def _not_found_message(filename: str, subdir: str, what: str, tried, cache: pathlib.Path,
                       download: bool, hint=None) -> str:
    name = f"the {what} file {filename!r}" if what else repr(filename)
    lines = [f"could not find {name} locally"
             + (", and downloading it failed from every mirror." if download
                else ", and downloading is disabled (download=False)."),
             "Tried, in order:"]
    lines += [f"  - {place}: {reason}" for place, reason in tried]
    if hint:
        return "\n".join(lines + list(hint))
    lines += [
        "To supply the files yourself, get them (e.g. on a machine with internet) and either",
        "  * pass their folder: data_dir=FOLDER (examples: --data-dir FOLDER),",
        f"  * set {DATA_ENV_VAR}=ROOT with the files in ROOT/{subdir}/, or",
        f"  * copy them into the cache folder {cache / subdir}/ "
        f"(set {CACHE_ENV_VAR} to use another cache).",
    ]
    return "\n".join(lines)


def fetch(filename: str, *, subdir: str, mirrors: Sequence[str], md5s: Iterable[str] | None,
          data_dir=None, cache_dir=None, download: bool = True, progress: bool = True,
          timeout: float = DEFAULT_TIMEOUT, what: str = "", stream=None,
          hint: Sequence[str] | None = None) -> pathlib.Path:
    """The path of a verified local copy of ``filename``, downloading it if needed.

    Parameters
    ----------
    filename : str
        The file's name, e.g. ``"train-images-idx3-ubyte.gz"``.  For a ``*.gz`` name an
        uncompressed local copy (the name without ``.gz``) is accepted too.
    subdir : str
        The data set's folder name under ``$MINIDL_DATA`` and the cache, e.g. ``"mnist"``.
    mirrors : sequence of str
        Base URLs tried in order (``mirror + "/" + filename``); empty means no download.
    md5s : iterable of hex str, :class:`SHA256`, or None
        Accepted MD5s, of the file or of its uncompressed payload, or one expected SHA-256
        (None: no verification).
    data_dir : str, os.PathLike or None
        A folder looked in first: the file directly in it, or in ``data_dir/<subdir>/``.
    cache_dir : str, os.PathLike or None
        The cache root (default :func:`default_cache_dir`); downloads go to
        ``cache_dir/<subdir>/``.
    download : bool
        False: never use the network.
    progress : bool
        Show a progress bar (and the URL) on ``stream`` while downloading.
    timeout : float
        Seconds before a network connect or read gives up.
    what : str
        A name for the data set in messages (e.g. ``"MNIST"``).
    stream : text file or None
        Where progress goes (default ``sys.stderr``).
    hint : sequence of str or None
        The lines that end the not-found message, saying how to supply the file (default: the
        data sets' ``data_dir`` / ``$MINIDL_DATA`` / cache advice).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ChecksumError
        A local copy exists but fails the checksum (the message says which file and what to do).
    DatasetNotFoundError
        No local copy and every mirror failed (or ``download=False``); the message lists every
        folder and URL tried with the reason each failed, and how to supply the files.
    """
    if not filename or "/" in filename or "\\" in filename:
        raise ValueError(f"filename must be a plain file name, got {filename!r}")
    if isinstance(mirrors, str):
        raise TypeError("mirrors must be a sequence of base URLs, got a single str; wrap it "
                        "in a list")
    stream = sys.stderr if stream is None else stream
    cache = pathlib.Path(cache_dir).expanduser() if cache_dir is not None \
        else default_cache_dir()
    tried: list[tuple[str, str]] = []
    found = _find_local(filename, md5s, _local_folders(subdir, data_dir, cache), tried)
    if found is not None:
        return found
    if download and mirrors:
        got = _download(filename, list(mirrors), cache / subdir, md5s, timeout, progress,
                        stream, tried)
        if got is not None:
            return got
    elif download:
        tried.append(("download", "no mirrors given"))
    raise DatasetNotFoundError(
        _not_found_message(filename, subdir, what, tried, cache, download, hint), filename,
        tried)
