"""compose-test's webhook receiver: a compose service on the project network.

POST any path: counts the delivery under its X-Hook-Slinger-Job-Id header,
waits `?delay_ms=N` milliseconds (so deliveries overlap and a worker can be
killed mid-run), then answers 200. GET /counts: {job_id: deliveries} as JSON.
GET /health: 200. Python 3 standard library only.
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PORT = 8080
counts: dict[str, int] = {}
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        job_id = self.headers.get("X-Hook-Slinger-Job-Id") or "(none)"
        with lock:
            counts[job_id] = counts.get(job_id, 0) + 1
        delay_ms = parse_qs(urlsplit(self.path).query).get("delay_ms", ["0"])[0]
        time.sleep(int(delay_ms) / 1000)
        self.answer(200, b"{}")

    def do_GET(self) -> None:
        if self.path == "/counts":
            with lock:
                body = json.dumps(counts).encode()
            self.answer(200, body)
        elif self.path == "/health":
            self.answer(200, b"{}")
        else:
            self.answer(404, b"{}")

    def answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass  # one line per delivery would drown the logs


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("0.0.0.0", PORT), Handler).serve_forever()
