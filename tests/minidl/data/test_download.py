"""minidl.data.download: local look-up order, and downloads from a server on 127.0.0.1.

Nothing here touches the network: the "mirrors" are a ``http.server`` in a thread on an
ephemeral port of 127.0.0.1 (the ``server`` fixture of conftest.py), and every cache is
under ``tmp_path``.
"""
import contextlib
import gzip
import hashlib
import io
import socket

import numpy as np
import pytest

from minidl.data import ChecksumError, DatasetNotFoundError, fetch, verify_file, write_idx
from minidl.data.download import default_cache_dir

NAME = "train-labels-idx1-ubyte.gz"


def _payload():
    buf = io.BytesIO()
    write_idx(buf, np.arange(200, dtype=np.uint8) % 10, compress=False)
    return buf.getvalue()


PAYLOAD = _payload()
GZ = gzip.compress(PAYLOAD, mtime=0)
GZ_MD5 = hashlib.md5(GZ).hexdigest()
PAYLOAD_MD5 = hashlib.md5(PAYLOAD).hexdigest()
OTHER_GZ = gzip.compress(PAYLOAD[:-1] + b"\x03", mtime=0)  # a different, valid-looking file


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """No real data folder and no real cache leak into these tests."""
    monkeypatch.delenv("MINIDL_DATA", raising=False)
    monkeypatch.setenv("MINIDL_CACHE", str(tmp_path / "default-cache"))


def _fetch(cache, mirrors, md5s=(GZ_MD5,), **kw):
    return fetch(NAME, subdir="mnist", mirrors=mirrors, md5s=md5s, cache_dir=cache,
                 progress=False, timeout=5, what="MNIST", **kw)


def _closed_port_url():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist/"


# --------------------------------------------------------------------------- downloads

@pytest.mark.parametrize("md5", [GZ_MD5, PAYLOAD_MD5], ids=["gz-md5", "payload-md5"])
def test_good_download_is_verified_and_cached(server, tmp_path, md5):
    server.routes["/a/" + NAME] = GZ
    cache = tmp_path / "cache"
    path = _fetch(cache, [server.url("a")], md5s=(md5,))
    assert path == cache / "mnist" / NAME
    assert path.read_bytes() == GZ
    assert sorted(p.name for p in (cache / "mnist").iterdir()) == [NAME]
    # a second fetch uses the cache: no new request
    assert _fetch(cache, [server.url("a")], md5s=(md5,)) == path
    assert server.hits == ["/a/" + NAME]


def test_corrupt_download_falls_back_to_next_mirror(server, tmp_path):
    server.routes["/bad/" + NAME] = OTHER_GZ
    server.routes["/good/" + NAME] = GZ
    cache = tmp_path / "cache"
    path = _fetch(cache, [server.url("bad"), server.url("good")])
    assert path.read_bytes() == GZ
    assert server.hits == ["/bad/" + NAME, "/good/" + NAME]
    assert [p.name for p in (cache / "mnist").iterdir()] == [NAME]


def test_corrupt_download_everywhere_leaves_nothing(server, tmp_path):
    server.routes["/bad/" + NAME] = OTHER_GZ
    cache = tmp_path / "cache"
    with pytest.raises(DatasetNotFoundError,
                       match=r"(?s)bad/train-labels-idx1-ubyte\.gz: the downloaded file failed "
                             r"the checksum: got file MD5 [0-9a-f]{32}, uncompressed payload MD5"):
        _fetch(cache, [server.url("bad")])
    assert not cache.exists()  # no empty cache folder left behind


def test_404_falls_back_to_next_mirror(server, tmp_path):
    server.routes["/good/" + NAME] = GZ
    path = _fetch(tmp_path / "cache", [server.url("missing"), server.url("good")])
    assert path.read_bytes() == GZ
    assert server.hits == ["/missing/" + NAME, "/good/" + NAME]


def test_connection_dropped_mid_file_leaves_no_partial_file(server, tmp_path):
    server.routes["/drop/" + NAME] = ("drop", GZ)
    server.routes["/good/" + NAME] = GZ
    cache = tmp_path / "cache"
    path = _fetch(cache, [server.url("drop"), server.url("good")])
    assert path.read_bytes() == GZ
    assert [p.name for p in (cache / "mnist").iterdir()] == [NAME]  # no *.part left


def test_connection_dropped_without_fallback(server, tmp_path):
    server.routes["/drop/" + NAME] = ("drop", GZ)
    cache = tmp_path / "cache"
    half, full = len(GZ) // 2, len(GZ)
    with pytest.raises(DatasetNotFoundError, match=rf"drop/train-labels-idx1-ubyte\.gz: connection "
                                                   rf"closed early: received {half} of {full}"):
        _fetch(cache, [server.url("drop")])
    assert not cache.exists()  # no empty cache folder left behind


def test_all_mirrors_fail_lists_everything_tried(server, tmp_path):
    server.routes["/bad/" + NAME] = OTHER_GZ
    server.routes["/err/" + NAME] = 500
    closed = _closed_port_url()
    mirrors = [server.url("missing"), server.url("bad"), server.url("err"), closed]
    with pytest.raises(DatasetNotFoundError) as info:
        _fetch(tmp_path / "cache", mirrors, data_dir=tmp_path / "mine")
    msg = str(info.value)
    assert "could not find the MNIST file 'train-labels-idx1-ubyte.gz' locally, and " \
           "downloading it failed from every mirror." in msg
    for needle in [f"{tmp_path / 'mine' / NAME}: not found",
                   f"{tmp_path / 'mine' / 'mnist' / NAME}: not found",
                   "$MINIDL_DATA: not set",
                   f"{tmp_path / 'cache' / 'mnist' / NAME}: not found",
                   f"{server.url('missing')}{NAME}: HTTP 404",
                   f"{server.url('bad')}{NAME}: the downloaded file failed the checksum",
                   f"{server.url('err')}{NAME}: HTTP 500",
                   f"{closed}{NAME}: cannot connect",
                   "data_dir=FOLDER", "MINIDL_DATA=ROOT with the files in ROOT/mnist/",
                   f"{tmp_path / 'cache' / 'mnist'}/"]:
        assert needle in msg
    assert info.value.filename == NAME
    assert [place for place, _ in info.value.tried][-4:] == [m + NAME for m in mirrors]
    assert isinstance(info.value, FileNotFoundError)
    assert not (tmp_path / "cache").exists()  # no empty cache folder left behind


def test_offline_message_says_how_to_supply_the_files(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"(?s)downloading is disabled \(download="
                                                   r"False\)\..*Tried, in order:.*--data-dir"):
        _fetch(tmp_path / "cache", ["http://127.0.0.1:9/never/"], download=False)
    with pytest.raises(DatasetNotFoundError, match=r"(?s)failed from every mirror.*"
                                                   r"never/train-labels-idx1-ubyte\.gz: "
                                                   r"cannot connect"):
        _fetch(tmp_path / "cache", [_closed_port_url().replace("mnist", "never")])


# --------------------------------------------------------------------------- local look-up

def test_lookup_order_data_dir_then_env_then_cache(tmp_path, monkeypatch):
    for folder in ["given", "given/mnist", "env/mnist", "cache/mnist"]:
        (tmp_path / folder).mkdir(parents=True)
    monkeypatch.setenv("MINIDL_DATA", str(tmp_path / "env"))
    (tmp_path / "cache/mnist" / NAME).write_bytes(GZ)
    assert _fetch(tmp_path / "cache", []) == tmp_path / "cache/mnist" / NAME
    (tmp_path / "env/mnist" / NAME).write_bytes(GZ)
    assert _fetch(tmp_path / "cache", []) == tmp_path / "env/mnist" / NAME
    (tmp_path / "given/mnist" / NAME).write_bytes(GZ)
    assert _fetch(tmp_path / "cache", [], data_dir=tmp_path / "given") \
        == tmp_path / "given/mnist" / NAME
    (tmp_path / "given" / NAME).write_bytes(GZ)
    assert _fetch(tmp_path / "cache", [], data_dir=tmp_path / "given") == tmp_path / "given" / NAME


def test_uncompressed_local_copy_is_accepted_by_payload_md5(tmp_path):
    (tmp_path / NAME[:-3]).write_bytes(PAYLOAD)
    assert _fetch(tmp_path / "cache", [], md5s=(GZ_MD5, PAYLOAD_MD5), data_dir=tmp_path) \
        == tmp_path / NAME[:-3]


def test_damaged_local_file_is_an_error_that_says_what_to_do(tmp_path):
    (tmp_path / NAME).write_bytes(OTHER_GZ)
    with pytest.raises(ChecksumError, match=r"(?s)checksum mismatch.*found via data_dir\) is "
                                            r"damaged.*Delete or replace it"):
        _fetch(tmp_path / "cache", [], data_dir=tmp_path)


def test_verify_file_accepts_either_md5_and_reports_both(tmp_path):
    path = tmp_path / NAME
    path.write_bytes(GZ)
    verify_file(path, [GZ_MD5.upper()])
    verify_file(path, [PAYLOAD_MD5])
    verify_file(path, None)
    with pytest.raises(ChecksumError, match=f"got file MD5 {GZ_MD5}, uncompressed payload MD5 "
                                            f"{PAYLOAD_MD5}; expected MD5 one of"):
        verify_file(path, ["0" * 32])
    path.write_bytes(GZ[:-10])
    with pytest.raises(ChecksumError, match="its gzip data is damaged"):
        verify_file(path, ["0" * 32])


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MINIDL_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("MINIDL_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "minidl"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "minidl"


def test_fetch_uses_default_cache_from_env(server, tmp_path, monkeypatch):
    monkeypatch.setenv("MINIDL_CACHE", str(tmp_path / "envcache"))
    server.routes["/a/" + NAME] = GZ
    path = fetch(NAME, subdir="mnist", mirrors=[server.url("a")], md5s=[GZ_MD5],
                 progress=False, timeout=5)
    assert path == tmp_path / "envcache" / "mnist" / NAME


def test_download_progress_is_printed_to_the_stream(server, tmp_path):
    server.routes["/a/" + NAME] = GZ
    out = io.StringIO()
    fetch(NAME, subdir="mnist", mirrors=[server.url("a")], md5s=[GZ_MD5],
          cache_dir=tmp_path / "cache", progress=True, stream=out, timeout=5)
    text = out.getvalue()
    assert f"downloading {server.url('a')}{NAME} -> " in text
    assert f"{NAME}: 100%|" in text and "B/s" in text


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="filename must be a plain file name, got 'a/b'"):
        fetch("a/b", subdir="mnist", mirrors=[], md5s=None, cache_dir=tmp_path)
    with pytest.raises(TypeError, match="mirrors must be a sequence of base URLs, got a single"):
        fetch(NAME, subdir="mnist", mirrors="http://127.0.0.1/", md5s=None, cache_dir=tmp_path)


def test_no_temp_files_left_after_any_failure(server, tmp_path):
    server.routes["/drop/" + NAME] = ("drop", GZ)
    server.routes["/bad/" + NAME] = OTHER_GZ
    cache = tmp_path / "cache"
    with contextlib.suppress(DatasetNotFoundError):
        _fetch(cache, [server.url("drop"), server.url("bad"), server.url("missing")])
    assert not cache.exists()  # no temporary file, no empty cache folder


def test_a_failed_download_removes_only_the_folders_it_created(server, tmp_path):
    """Issue 21 item 9: offline, fetch left an empty cache folder behind.  The folders it
    creates are removed again when every mirror fails; a folder that existed, or holds other
    files, stays."""
    cache = tmp_path / "cache"
    with pytest.raises(DatasetNotFoundError):
        _fetch(cache, [server.url("missing")])
    assert not cache.exists()
    (cache / "mnist").mkdir(parents=True)
    (cache / "mnist" / "other.gz").write_bytes(b"x")
    with pytest.raises(DatasetNotFoundError):
        _fetch(cache, [server.url("missing")])
    assert [p.name for p in (cache / "mnist").iterdir()] == ["other.gz"]


def test_mirrors_that_never_answer_print_nothing_only_the_final_error_lists_them(server,
                                                                                  tmp_path):
    """Offline, the progress stream stays empty (the error names every mirror tried); a mirror
    that answers and then fails gets its 'downloading' and 'failed' lines."""
    stream = io.StringIO()
    closed = [_closed_port_url(), _closed_port_url().replace("mnist", "other")]
    with pytest.raises(DatasetNotFoundError) as info:
        fetch(NAME, subdir="mnist", mirrors=closed, md5s=(GZ_MD5,), cache_dir=tmp_path / "c",
              progress=True, stream=stream, timeout=5, what="MNIST")
    assert stream.getvalue() == ""
    assert all(m in str(info.value) for m in closed)
    server.routes["/bad/" + NAME] = OTHER_GZ
    with pytest.raises(DatasetNotFoundError):
        fetch(NAME, subdir="mnist", mirrors=[server.url("bad")], md5s=(GZ_MD5,),
              cache_dir=tmp_path / "c", progress=True, stream=stream, timeout=5, what="MNIST")
    assert "downloading " in stream.getvalue() and "failed: " in stream.getvalue()
