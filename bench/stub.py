"""A small DICOMweb stub serving many archives at once, for monitoring's
benchmark and tests: every ``/archive/<n>/dicom-web`` root answers like a
healthy archive with CORS for any origin (preflight 204, an empty QIDO search,
CORS on errors too); every ``/broken/<n>/dicom-web`` root answers the search
without CORS headers (``cors_missing``).

``python -m bench.stub --port 8099`` serves until stopped.
"""

from __future__ import annotations

import argparse
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class StubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "dicomweb-stub/1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _cors(self) -> None:
        if self.path.startswith("/broken/"):
            return
        self.send_header(
            "Access-Control-Allow-Origin", self.headers.get("Origin") or "*"
        )
        self.send_header("Vary", "Origin")

    def _answer(self, status: int, body: bytes = b"", preflight: bool = False) -> None:
        self.send_response(status)
        self._cors()
        if preflight and not self.path.startswith("/broken/"):
            self.send_header("Access-Control-Allow-Methods", "GET, OPTIONS")
            self.send_header("Access-Control-Allow-Headers", "Accept, Authorization")
            self.send_header("Access-Control-Max-Age", "600")
        if body:
            self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def do_OPTIONS(self) -> None:
        self._answer(204, preflight=True)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path.endswith("/dicom-web/studies"):
            self._answer(200, b"[]")
        else:
            self._answer(404, b'{"error": "not found"}')


class StubServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024


def serve(port: int) -> StubServer:
    """Start the stub on 127.0.0.1:``port`` in a thread; ``.shutdown()`` stops it."""
    server = StubServer(("127.0.0.1", port), StubHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    server = StubServer(("127.0.0.1", port), StubHandler)
    print(f"stub on http://127.0.0.1:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
