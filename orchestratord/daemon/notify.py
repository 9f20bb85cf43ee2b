"""sd_notify messages that never block the event loop.

sdnotify sends with a blocking send(): when the NOTIFY_SOCKET's queue is full (its
reader is stuck, or it is a socket nobody reads; Linux queues only
net.unix.max_dgram_qlen datagrams, 10 by default) the daemon's loop would freeze until
it drains, and with it every run, the API and the watchdog pings. Here the socket is
non-blocking: a message that does not fit is dropped, with a warning. A dropped STATUS=
or WATCHDOG=1 is replaced by the next one; systemd reads its socket as fast as we write.
"""

from __future__ import annotations

import logging

import sdnotify

log = logging.getLogger("orchestratord.daemon")


class Notifier(sdnotify.SystemdNotifier):
    """sdnotify's notifier (it finds and connects NOTIFY_SOCKET), sending without blocking."""

    def __init__(self) -> None:
        super().__init__()  # self.socket is None without a NOTIFY_SOCKET
        if self.socket is not None:
            self.socket.setblocking(False)
        self.dropped = 0

    def notify(self, state: str) -> None:
        if self.socket is None:
            return
        try:
            self.socket.send(state.encode())
        except BlockingIOError:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning("NOTIFY_SOCKET is full: its reader is not reading; dropped %r "
                            "(%d dropped so far)", state.split("\n", 1)[0], self.dropped)
        except OSError as exc:  # its reader went away (a restarted manager): as sdnotify did
            log.debug("sd_notify %r failed: %s", state, exc)
