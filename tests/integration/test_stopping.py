"""How the client of orchestrator@ tells a system shutdown from a stop of its unit: it asks
systemctl, a real child process (a stand-in here, printing what systemctl prints)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from orchestratord.cli.stopping import system_is_stopping
from tests.waiting import file_words, until_async

# Writes its pid (whole: a rename, so a reader never sees an empty file), waits until told
# to answer, then prints list-jobs lines.
FAKE_SYSTEMCTL = """\
import os, sys, time
from pathlib import Path
here = Path(sys.argv[0]).parent
(here / "pid.new").write_text(str(os.getpid()))
(here / "pid.new").rename(here / "pid")
while not (here / "answer").exists():
    time.sleep(0.01)
print((here / "answer").read_text(), end="")
"""


def fake_systemctl(tmp_path: Path) -> str:
    program = tmp_path / "systemctl"
    program.write_text(f"#!{sys.executable}\n{FAKE_SYSTEMCTL}")
    program.chmod(0o755)
    return str(program)


async def started(tmp_path: Path) -> int:
    """Regression: the pid file was read between its creation and its write (int(''))."""
    words = await until_async("the systemctl stand-in to write its pid",
                              file_words(tmp_path / "pid", 1), timeout=10)
    return int(words[0])


async def test_the_check_survives_the_sigterm_systemd_sends_the_whole_unit(tmp_path: Path) -> None:
    """Regression: at shutdown systemd sends SIGTERM to every process in the unit's
    cgroup, including the systemctl the client had just forked to ask; it died, the
    check said "no shutdown", and the run was cancelled instead of left interrupted."""
    check = asyncio.create_task(system_is_stopping(fake_systemctl(tmp_path)))
    os.kill(await started(tmp_path), signal.SIGTERM)  # what the cgroup sweep does
    (tmp_path / "answer").write_text("1 poweroff.target start waiting\n"
                                     "2 shutdown.target start waiting\n")
    assert await asyncio.wait_for(check, 10) is True


async def test_a_stop_without_a_shutdown_job_is_a_cancel(tmp_path: Path) -> None:
    check = asyncio.create_task(system_is_stopping(fake_systemctl(tmp_path)))
    await started(tmp_path)
    (tmp_path / "answer").write_text("7 orchestrator@x.service stop running\n")
    assert await asyncio.wait_for(check, 10) is False


async def test_a_failing_systemctl_is_a_cancel_and_says_so(tmp_path: Path, capfd) -> None:
    program = tmp_path / "broken"
    program.write_text(f"#!{sys.executable}\nimport sys; sys.exit('Failed to connect to bus')\n")
    program.chmod(0o755)
    assert await system_is_stopping(str(program)) is False
    err = capfd.readouterr().err
    assert "exit 1: Failed to connect to bus" in err and "treating the stop as a cancel" in err
