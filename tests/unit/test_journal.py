"""Logging's one configuration: journald fields through python-systemd, or stderr lines."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from orchestratord.engine.context import step_logger
from orchestratord.observability.journal import journal_handler

MESSAGE_ID = "6a1c5c3c0d7e4f7e9b3a2d1c0b9a8f7e"


@pytest.fixture
def sent() -> Iterator[list[dict[str, Any]]]:
    """What the journal handler hands to systemd.journal.send, one dict per record: its
    upper-case keys become journal fields (journald drops the others)."""
    calls: list[dict[str, Any]] = []
    logger = logging.getLogger("orchestratord.test_journal")
    handler = journal_handler("orchestratord-test",
                              send=lambda MESSAGE, **fields: calls.append(
                                  {"MESSAGE": MESSAGE, **fields}))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield calls
    finally:
        logger.removeHandler(handler)
        logger.propagate = True


def test_a_records_fields_reach_the_journal_as_upper_case_fields(sent) -> None:
    log = step_logger("orchestratord.test_journal", WORKFLOW="deploy", RUN_ID="r1",
                      STEP_ID="s1", SKILL="work", ACTION="step", ATTEMPT=2)
    log.error("step %s failed", "s1", extra={"fields": {"MESSAGE_ID": MESSAGE_ID}})
    [entry] = sent
    assert entry["MESSAGE"] == "step s1 failed"
    assert {k: entry[k] for k in ("WORKFLOW", "RUN_ID", "STEP_ID", "SKILL", "ACTION",
                                  "ATTEMPT", "MESSAGE_ID")} == {
        "WORKFLOW": "deploy", "RUN_ID": "r1", "STEP_ID": "s1", "SKILL": "work",
        "ACTION": "step", "ATTEMPT": 2, "MESSAGE_ID": MESSAGE_ID}
    assert entry["PRIORITY"] == "3" and entry["SYSLOG_IDENTIFIER"] == "orchestratord-test"
    assert entry["LOGGER"] == "orchestratord.test_journal"


def test_a_field_without_a_value_is_not_sent(sent) -> None:
    logging.getLogger("orchestratord.test_journal").info(
        "run started", extra={"fields": {"RUN_ID": "r1", "STEP_ID": None}})
    [entry] = sent
    assert entry["RUN_ID"] == "r1" and "STEP_ID" not in entry


def test_without_systemd_python_records_are_prefixed_stderr_lines() -> None:
    """The fallback where systemd-python is absent: `<N>` priority, then the fields."""
    code = """if True:
        import logging, sys
        sys.modules["systemd"] = None  # as if systemd-python were not installed
        from orchestratord.observability import journal
        print(journal.configure(target="journal"), flush=True)
        logging.getLogger("orchestratord.x").error(
            "boom", extra={"fields": {"RUN_ID": "r1", "STEP_ID": "s1", "MESSAGE_ID": "m"}})
        """
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "stderr"
    assert done.stderr.splitlines() == ["<3>boom RUN_ID=r1 STEP_ID=s1"]
