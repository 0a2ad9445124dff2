"""A loopback web server for the demo: each sample document as an article page at its URL's path.

    python -m pipeline.sample.server PORT      # serves until interrupted

Pages carry the kinds of boilerplate real ones do (navigation, a cookie banner, related links, a
footer) around the article, so the extract stage has something to remove. robots.txt allows all.
"""

from __future__ import annotations

import html
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from pipeline.sample import DROPS, article_page, documents


def stub_page(title: str, body: str) -> bytes:
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title></head>"
            f"<body><nav><a href=\"/\">Home</a></nav><article>{body}</article></body></html>").encode()


class SampleHandler(BaseHTTPRequestHandler):
    pages = {urlsplit(d["url"]).path: article_page(d) for d in documents()}
    pages.update({urlsplit(url).path: stub_page(title, body)
                  for url, title, body in DROPS if body is not None})

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = urlsplit(self.path).path
        if path == "/robots.txt":
            self._send(200, "text/plain", b"User-agent: *\nAllow: /\n")
        elif path in self.pages:
            self._send(200, "text/html; charset=utf-8", self.pages[path])
        else:
            self._send(404, "text/html", b"<html><body>not found</body></html>")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server's name)
        pass


def serve(port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Start the server in a daemon thread; ``shutdown()`` stops it."""
    server = ThreadingHTTPServer((host, port), SampleHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m pipeline.sample.server PORT")
    httpd = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), SampleHandler)
    print(f"serving the sample pages on http://127.0.0.1:{sys.argv[1]}", flush=True)
    httpd.serve_forever()
