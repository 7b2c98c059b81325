"""A local stand-in for the Hugging Face hub and its CDN, on 127.0.0.1, for download tests.

One http.server answers two "hosts": ``127.0.0.1:<port>`` plays the hub (point
``$HF_ENDPOINT`` at `Hub.url`) and ``localhost:<port>`` plays the CDN, a different host
to a URL client although it is the same socket. As the real hub does for a file stored
in LFS, ``/<repo>/resolve/<rev>/<name>`` answers 302 to the CDN with the file's SHA-256
in ``X-Linked-Etag`` and its size in ``X-Linked-Size``; the CDN sends the bytes. Every
request is recorded (host, path, Authorization header) so tests can see where a token went.
Files under ``/files/<name>`` are served directly (a plain mirror or Meta's server).
"""

from __future__ import annotations

import hashlib
import http.server
import threading
from dataclasses import dataclass, field


@dataclass
class Hub:
    url: str = ""  # the hub: http://127.0.0.1:<port>
    cdn: str = ""  # the CDN: http://localhost:<port>
    files: dict[str, bytes] = field(default_factory=dict)
    seen: list[tuple[str, str, str | None]] = field(default_factory=list)  # (host, path, Authorization)
    redirect: str = "cdn"  # "cdn": to the other host; "same": a relative redirect on the hub itself
    linked_etag: str | None = "right"  # "right", None, or a value sent as it is
    cdn_etag: str | None = None  # the CDN's own ETag (never the hub's checksum)
    cut_after: int | None = None  # send only this many bytes, then close (Content-Length stays full)

    def sha256(self, name: str) -> str:
        return hashlib.sha256(self.files[name]).hexdigest()


def _handler(hub: Hub):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_GET(self):
            hub.seen.append((self.headers.get("Host", ""), self.path, self.headers.get("Authorization")))
            path = self.path.split("?", 1)[0]
            parts = path.strip("/").split("/")
            if len(parts) >= 5 and parts[2] == "resolve" and parts[-1] in hub.files:
                return self._redirect(parts[-1])
            if len(parts) == 2 and parts[0] in ("cdn", "files") and parts[1] in hub.files:
                return self._send(hub.files[parts[1]], etag=hub.cdn_etag if parts[0] == "cdn" else None)
            self._reply(404, b"Entry not found")

        def _redirect(self, name):
            target = f"/cdn/{name}?X-Amz-Signature=abc"
            if hub.redirect == "cdn":
                target = hub.cdn + target
            self.send_response(302)
            self.send_header("Location", target)
            if hub.linked_etag is not None:
                etag = hub.sha256(name) if hub.linked_etag == "right" else hub.linked_etag
                self.send_header("X-Linked-Etag", f'"{etag}"')
            self.send_header("X-Linked-Size", str(len(hub.files[name])))
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _send(self, data, etag=None):
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            if etag:
                self.send_header("ETag", f'"{etag}"')
            self.end_headers()
            if hub.cut_after is not None:
                self.wfile.write(data[: hub.cut_after])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(data)

        def _reply(self, code, body):
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


class serve:
    """``with serve(files) as hub:`` a running `Hub` on a free port."""

    def __init__(self, files: dict[str, bytes]):
        self.hub = Hub(files=dict(files))

    def __enter__(self) -> Hub:
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.hub))
        self.server.daemon_threads = True
        port = self.server.server_address[1]
        self.hub.url, self.hub.cdn = f"http://127.0.0.1:{port}", f"http://localhost:{port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self.hub

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)
