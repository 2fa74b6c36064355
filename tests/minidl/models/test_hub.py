"""minidl.models.hub: weight downloads against a real local HTTP server (http.server in a
thread), verified by SHA-256, cached, atomic; offline use from a file or the cache."""
import hashlib
import http.server
import io
import re
import threading

import numpy as np
import pytest

from minidl.convert import write_weights
from minidl.data.checksums import SHA256, ChecksumError
from minidl.data.download import DatasetNotFoundError
from minidl.models import hub, resnet8
from minidl.models.hub import WEIGHTS, WeightFile, pretrained, source_of, weights_file


class _Server:
    """Serves ``routes[path] = (body, cut)``: with ``cut`` the server announces the whole
    body's Content-Length, sends half of it and closes the connection."""

    def __init__(self):
        self.routes, self.hits = {}, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.hits.append(self.path)
                if self.path not in server.routes:
                    self.send_error(404)
                    return
                body, cut = server.routes[self.path]
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[:len(body) // 2] if cut else body)
                self.wfile.flush()
                if cut:
                    self.close_connection = True

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = _Server()
    yield s
    s.close()


@pytest.fixture
def tiny(tmp_path):
    """A real weight file (resnet8, .npz in minidl's layout) registered in the table under a
    torchvision-style name carrying its hash prefix; returns (model, bytes, sha256)."""
    model = resnet8()
    path = tmp_path / "src.npz"
    write_weights(path, model.state_dict())
    body = path.read_bytes()
    return model, body, hashlib.sha256(body).hexdigest()


def _register(monkeypatch, url, digest):
    entry = WeightFile("resnet8", "torchvision", url, sha256=digest)
    monkeypatch.setitem(WEIGHTS, ("resnet8", "torchvision"), entry)
    return entry


def _no_leftovers(cache):
    return [p.name for p in cache.rglob("*")] if cache.exists() else []


@pytest.mark.parametrize("digits", [64, 8])     # the full digest, or torchvision's prefix
def test_a_good_file_is_downloaded_verified_cached_and_loaded(server, tiny, tmp_path,
                                                              monkeypatch, digits):
    model, body, digest = tiny
    name = f"resnet8-{digest[:8]}.npz"
    server.routes["/" + name] = (body, False)
    _register(monkeypatch, server.url("/" + name), digest[:digits])
    cache, log = tmp_path / "cache", io.StringIO()
    got = pretrained("resnet8", cache_dir=cache, stream=log)
    assert (cache / "models" / name).read_bytes() == body
    assert server.url("/" + name) in log.getvalue() and "100%" in log.getvalue()
    for key, value in model.state_dict().items():
        np.testing.assert_array_equal(got.state_dict()[key], value)
    assert not got.training
    # the second time it comes from the cache: no request
    assert weights_file("resnet8", cache_dir=cache) == cache / "models" / name
    assert server.hits == ["/" + name]


def test_a_wrong_sha256_is_rejected_and_not_cached(server, tiny, tmp_path, monkeypatch):
    _, body, digest = tiny
    server.routes["/w.npz"] = (body, False)
    wrong = hashlib.sha256(b"something else").hexdigest()
    _register(monkeypatch, server.url("/w.npz"), wrong)
    cache = tmp_path / "cache"
    with pytest.raises(DatasetNotFoundError) as info:
        weights_file("resnet8", cache_dir=cache, progress=False)
    assert f"got SHA-256 {digest}; expected SHA-256 {wrong}" in str(info.value)
    assert _no_leftovers(cache) == []
    _register(monkeypatch, server.url("/w.npz"), wrong[:8])     # a wrong prefix too
    with pytest.raises(DatasetNotFoundError, match=rf"expected SHA-256 {wrong[:8]}\.\.\. "
                                                   r"\(a prefix\)"):
        weights_file("resnet8", cache_dir=cache, progress=False)
    assert _no_leftovers(cache) == []


def test_an_interrupted_download_leaves_no_partial_file(server, tiny, tmp_path, monkeypatch):
    _, body, digest = tiny
    server.routes["/cut.npz"] = (body, True)
    _register(monkeypatch, server.url("/cut.npz"), digest)
    cache = tmp_path / "cache"
    with pytest.raises(DatasetNotFoundError, match=r"connection closed early"):
        weights_file("resnet8", cache_dir=cache, progress=False)
    assert server.hits == ["/cut.npz"]
    assert _no_leftovers(cache) == []


def test_offline_the_error_lists_every_place_tried(tiny, tmp_path, monkeypatch):
    _, _, digest = tiny
    entry = _register(monkeypatch, "http://127.0.0.1:9/resnet8-x.npz", digest)  # closed port
    monkeypatch.setenv("MINIDL_DATA", str(tmp_path / "data"))
    with pytest.raises(DatasetNotFoundError) as info:
        weights_file("resnet8", data_dir=tmp_path / "mine", cache_dir=tmp_path / "cache",
                     progress=False)
    text = str(info.value)
    assert text.startswith("could not find the resnet8 (torchvision) weights file "
                           "'resnet8-x.npz' locally, and downloading it failed")
    for place in (tmp_path / "mine" / "resnet8-x.npz", tmp_path / "data" / "models",
                  tmp_path / "cache" / "models" / "resnet8-x.npz"):
        assert str(place) in text
    assert re.search(r"http://127\.0\.0\.1:9/resnet8-x\.npz: cannot connect", text)
    assert "pretrained(..., weights=FILE)" in text and entry.url in text
    assert [p for p, _ in info.value.tried][-1] == entry.url
    with pytest.raises(DatasetNotFoundError, match=r"downloading is disabled"):
        weights_file("resnet8", cache_dir=tmp_path / "cache", download=False)


def test_offline_from_a_file_path_or_the_cache(tiny, tmp_path, monkeypatch):
    model, body, digest = tiny
    _register(monkeypatch, "http://127.0.0.1:9/resnet8-ab.npz", digest)
    mine = tmp_path / "elsewhere.npz"
    mine.write_bytes(body)
    got = pretrained("resnet8", weights=mine)
    np.testing.assert_array_equal(got.fc.W.data, model.fc.W.data)
    cache = tmp_path / "cache"
    (cache / "models").mkdir(parents=True)
    (cache / "models" / "resnet8-ab.npz").write_bytes(body)
    monkeypatch.setenv("MINIDL_CACHE", str(cache))
    assert weights_file("resnet8", download=False) == cache / "models" / "resnet8-ab.npz"
    (cache / "models" / "resnet8-ab.npz").write_bytes(body[:-1] + b"x")   # damaged copy
    with pytest.raises(ChecksumError,
                       match=r"(?s)resnet8-ab\.npz.*checksum mismatch.*Delete or replace it"):
        weights_file("resnet8", download=False)


def test_the_table_of_published_files():
    for (arch, source), entry in WEIGHTS.items():
        assert entry.arch == arch and entry.source == source
        if source == "torchvision":   # the name carries the SHA-256 prefix that is checked
            assert entry.url.startswith("https://download.pytorch.org/models/")
            assert f"-{entry.sha256}.pth" in entry.filename and len(entry.sha256) == 8
        else:                         # Keras publishes MD5s
            assert entry.url.startswith("https://storage.googleapis.com/tensorflow/"
                                        "keras-applications/")
            assert re.fullmatch(r"[0-9a-f]{32}", entry.md5) and entry.filename.endswith(".h5")
    assert WEIGHTS[("resnet50", "torchvision")].filename == "resnet50-0676ba61.pth"


def test_sources_architectures_and_bad_names():
    assert source_of("x/resnet50_weights_tf_dim_ordering_tf_kernels.h5") == "keras"
    assert source_of("resnet50-0676ba61.pth") == source_of("r.npz") == "torchvision"
    assert type(hub.build("resnet50", "keras")).__name__ == "KerasResNet"
    assert hub.build("inception_v3").transform_input
    assert hub.preprocessing("inception_v3", "keras") == {"resize": 342, "crop": 299,
                                                          "mode": "tf"}
    with pytest.raises(ValueError, match=r"no keras weights for 'resnet18'; keras has: "
                                         r"inception_v3, resnet50"):
        weights_file("resnet18", "keras")
    with pytest.raises(ValueError, match=r"source must be one of torchvision, keras, got "
                                         r"'caffe'"):
        weights_file("resnet50", "caffe")
    with pytest.raises(ValueError, match=r"SHA256: expected 8 to 64 hex digits"):
        SHA256("0676")
