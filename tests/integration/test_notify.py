"""sd_notify with a NOTIFY_SOCKET nobody reads: the daemon's loop must never wait for it."""

from __future__ import annotations

import logging
import socket
import threading

from orchestratord.cli.client import DaemonError, request
from orchestratord.daemon.notify import Notifier
from tests.waiting import until


def unread_socket(path) -> socket.socket:
    """A NOTIFY_SOCKET bound and never read: its queue is full after a few datagrams."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    return sock


def test_a_full_notify_socket_drops_messages_with_a_warning(tmp_path, monkeypatch, caplog):
    with unread_socket(tmp_path / "notify"):
        monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
        notifier = Notifier()
        # In a thread: a blocking send would hang the test instead of failing it.
        sender = threading.Thread(target=lambda: [notifier.notify(f"STATUS={i}")
                                                  for i in range(2000)], daemon=True)
        with caplog.at_level(logging.WARNING, "orchestratord.daemon"):
            sender.start()
            sender.join(30)
        assert not sender.is_alive(), "notify() blocked on a full NOTIFY_SOCKET"
        assert notifier.dropped > 0
        warnings = [r.getMessage() for r in caplog.records if "NOTIFY_SOCKET is full" in
                    r.getMessage()]
        assert len(warnings) == 2, warnings  # the first drop and the 1000th, not each one
        assert "'STATUS=" in warnings[0]


def test_without_notify_socket_notify_does_nothing(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    Notifier().notify("READY=1")


def test_the_daemon_serves_while_its_notify_socket_is_never_read(env, daemon):
    """WATCHDOG=1 every millisecond into a socket nobody reads: its queue is full at once;
    before, the next ping's blocking send froze the loop and the API with it."""
    with unread_socket(env / "unread-notify"):
        d = daemon(NOTIFY_SOCKET=str(env / "unread-notify"), WATCHDOG_USEC="2000")

        def health():
            try:
                return request(env / "run" / "control.sock", "GET", "/health", timeout=5)
            except DaemonError:
                assert d.proc.poll() is None, "the daemon exited"
                return None
        until("the daemon to answer /health", health, timeout=60)
        until("the daemon to find its NOTIFY_SOCKET full",
              lambda: "NOTIFY_SOCKET is full" in (env / "daemon.log").read_text(), timeout=30)
        assert health()["status"] == "ok", "the loop serves after a send found the queue full"
        assert d.stop() == 0
