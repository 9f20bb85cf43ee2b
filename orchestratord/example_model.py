"""orchestrator-example-model: a tiny HTTP service that stands in for a model server.

It exists so that ai-service-management and health-monitoring can be tried, and tested,
against a real service without a real model: `agent-orchestrator-example-model.service`
runs it. Standard library only. Endpoints:

    GET /health      200 {"status": "ok", ...} once warmed up, 503 {"status": "loading"} before
    GET /v1/models   200 {"data": [{"id": NAME}]}, the shape OpenAI-style servers answer

`--warmup SECONDS` imitates a model that takes a while to load: /health answers 503
until then, as real model servers do while they load weights. Under systemd
(Type=notify) it sends READY=1 once its socket listens, so `systemctl start` and
ai-service-management's wait end when it can be reached.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def sd_notify(message: str) -> None:
    """Send a datagram to $NOTIFY_SOCKET (sd_notify(3)); nothing when not under systemd."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):  # abstract namespace
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
        sock.connect(path)
        sock.sendall(message.encode())


class Handler(BaseHTTPRequestHandler):
    server: ModelServer
    server_version = "orchestrator-example-model/1"

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # http.server's naming
        uptime = time.monotonic() - self.server.started
        if self.path == "/health":
            if uptime < self.server.warmup:
                self._reply(503, {"status": "loading", "model": self.server.model})
            else:
                self._reply(200, {"status": "ok", "model": self.server.model,
                                  "uptime_s": round(uptime, 3)})
        elif self.path == "/v1/models":
            self._reply(200, {"object": "list",
                              "data": [{"id": self.server.model, "object": "model"}]})
        else:
            self._reply(404, {"error": f"no route {self.path}"})

    def log_message(self, format: str, *args: Any) -> None:
        # One line per request on stderr, which systemd sends to the journal.
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


class ModelServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], model: str, warmup: float):
        super().__init__(address, Handler)
        self.model = model
        self.warmup = warmup
        self.started = time.monotonic()


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM (systemctl stop) ends serve_forever cleanly, as Ctrl-C does."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="orchestrator-example-model",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8088, help="0 picks a free port (printed)")
    p.add_argument("--model", default="example-model", help="the name it reports")
    p.add_argument("--warmup", type=float, default=0.0,
                   help="seconds /health answers 503 'loading' after start")
    args = p.parse_args(argv)
    server = ModelServer((args.host, args.port), args.model, args.warmup)
    signal.signal(signal.SIGTERM, _terminate)
    host, port = server.socket.getsockname()[:2]  # server_address is typed for any family
    print(f"serving {args.model} on http://{host}:{port}", file=sys.stderr, flush=True)
    sd_notify(f"READY=1\nSTATUS=serving {args.model} on {host}:{port}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        sd_notify("STOPPING=1")
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
