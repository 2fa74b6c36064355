"""Fixtures for the data tests: a local HTTP server that plays a download mirror."""
import http.server
import socket
import threading

import pytest


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``self.server.routes``: path -> bytes, an int status, or ("drop", bytes)."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 (the http.server API)
        self.server.hits.append(self.path)
        route = self.server.routes.get(self.path, 404)
        if isinstance(route, int):
            self.send_error(route)
            return
        if isinstance(route, tuple):  # announce the full length, send half, hang up
            data = route[1]
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(route)))
        self.end_headers()
        self.wfile.write(route)

    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture
def server():
    """A local HTTP server; ``server.url(prefix)`` is a mirror base URL."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    httpd.routes, httpd.hits = {}, []
    httpd.url = lambda prefix: f"http://127.0.0.1:{httpd.server_address[1]}/{prefix}/"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    try:
        yield httpd
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
