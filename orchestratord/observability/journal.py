"""The one place that configures logging: journald with fields, or stderr.

Records carry journald fields in `record.fields` (see context.step_logger): WORKFLOW,
RUN_ID, STEP_ID, SKILL, ACTION, ATTEMPT, MESSAGE_ID. Under systemd, python-systemd's
JournalHandler sends them to the journal natively (it sends a record's upper-case
attributes as fields; JournalFields puts them there), so `journalctl -u orchestratord
RUN_ID=<id>` shows one run. Elsewhere, and without systemd-python, each record is one
stderr line with a `<N>` syslog priority prefix (which journald also understands when
stderr is its stream) and the fields as key=value.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any

PRIORITY = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6,
            logging.DEBUG: 7}


def priority(levelno: int) -> int:
    for level, prio in PRIORITY.items():
        if levelno >= level:
            return prio
    return 7


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in (getattr(record, "fields", None) or {}).items() if v is not None}


class JournalFields(logging.Filter):
    """Copies a record's journald fields onto it as upper-case attributes, the `extra`
    keys python-systemd's JournalHandler sends as journal fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _fields(record).items():
            setattr(record, name, value)
        return True


def journal_handler(identifier: str,
                    send: Callable[..., None] | None = None) -> logging.Handler:
    """python-systemd's JournalHandler, sending our fields; ImportError without
    systemd-python. `send` stands in for systemd.journal.send (tests)."""
    from systemd import journal  # systemd-python, the journald extra
    handler = journal.JournalHandler(sender_function=send or journal.send,
                                     SYSLOG_IDENTIFIER=identifier)
    handler.addFilter(JournalFields())
    return handler


class PrefixFormatter(logging.Formatter):
    """`<6>message WORKFLOW=deploy RUN_ID=...`: one line per record, priority first."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record).replace("\n", "\n  ")
        fields = " ".join(f"{k}={v}" for k, v in _fields(record).items() if k != "MESSAGE_ID")
        return f"<{priority(record.levelno)}>{text}" + (f" {fields}" if fields else "")


def _stderr_is_journal() -> bool:
    """Whether stderr is connected to journald (systemd sets JOURNAL_STREAM=dev:ino)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError):
        return False
    return stream == f"{st.st_dev}:{st.st_ino}"


def quiet_libraries() -> None:
    """aiosqlite logs every statement with its arguments at DEBUG: run params, results,
    secrets. That is neither for operators nor safe, whatever our own level is."""
    logging.getLogger("aiosqlite").setLevel(logging.INFO)


def configure(level: int = logging.INFO, *, target: str = "auto",
              identifier: str = "orchestratord") -> str:
    """Install one handler on the root logger; returns which: journal, stderr or console.

    auto: the journal when stderr is journald's stream and systemd-python is present;
    prefixed stderr lines otherwise; a plain console format on a terminal.
    """
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.setLevel(level)
    quiet_libraries()
    if target == "auto":
        target = "journal" if _stderr_is_journal() else \
            "console" if sys.stderr.isatty() else "stderr"
    handler: logging.Handler
    if target == "journal":
        try:
            handler = journal_handler(identifier)
        except ImportError:
            target = "stderr"
    if target == "stderr":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(PrefixFormatter("%(message)s"))
    elif target == "console":
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    root.addHandler(handler)
    return target
