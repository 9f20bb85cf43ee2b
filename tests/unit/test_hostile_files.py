"""Definition files from a careless user or an attacker: deep, large, not files at all.

Each case runs `orchestratorctl validate` as a real process under a deadline: it must
exit 2 with the file (and line, where there is one), never hang, never print a traceback.
The deadlines leave room for a loaded 2-core machine; the work itself is well under one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from orchestratord.core.errors import DefinitionError
from orchestratord.language import source
from orchestratord.language.settings import load_settings
from orchestratord.skills import discover
from tests.conftest import ECHO, write_skill

DEADLINE = 20.0  # seconds for a whole CLI process, start-up included


def validate(*files: Path, skills: Path | None = None) -> tuple[int, str, float]:
    argv = [sys.executable, "-m", "orchestratord.cli"]
    argv += ["--skills", str(skills)] if skills else []
    started = time.monotonic()
    proc = subprocess.run([*argv, "validate", *map(str, files)], capture_output=True,
                          text=True, timeout=DEADLINE, stdin=subprocess.DEVNULL)
    elapsed = time.monotonic() - started
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, proc.stderr, elapsed


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("name, text, line", [
    ("deep.json", '{"workflow": ' + nested(10_000) + "}", 1),
    ("deep.yaml", "workflow:\n  name: " + nested(10_000) + "\n", 2),
    ("deep-block.yaml", "workflow:\n" + "".join("  " * i + "- \n" for i in range(1, 300)),
     source.MAX_DEPTH + 1),
])
def test_ten_thousand_deep_file_is_refused_with_its_line(tmp_path, name, text, line):
    """Deep nesting once raised RecursionError: a traceback and exit 1."""
    path = tmp_path / name
    path.write_text(text)
    code, err, _ = validate(path)
    assert code == 2
    assert f"{path}:" in err and f"nested deeper than {source.MAX_DEPTH} levels" in err
    assert int(err.split(f"{path}:")[1].split(":")[0]) == line


def test_deep_aliases_are_refused():
    """Each alias adds a level to an earlier anchor: deep data from a shallow document."""
    lines = ["a0: &a0 [1]"] + [f"a{i}: &a{i} [*a{i - 1}]" for i in range(1, 200)]
    doc = source.parse_text("\n".join(lines) + "\n", "aliases.yaml")
    assert doc.too_large and "nested deeper than" in str(doc.problems[0])


def test_nested_merge_keys_cost_what_they_expand_to():
    """PyYAML's flatten_mapping copies nested merges into each other before anything
    is counted; merges are expanded by the counting walk instead."""
    lines = ["a0: &a0 {x: 1, y: 2}"] + [f"a{i}: &a{i} {{<<: [*a{i - 1}, *a{i - 1}]}}"
                                        for i in range(1, 60)]
    started = time.monotonic()
    doc = source.parse_text("\n".join(lines) + "\n", "merge.yaml")
    assert time.monotonic() - started < 5
    assert doc.too_large and "more than" in str(doc.problems[0])


def test_merge_keys_keep_their_meaning():
    doc = source.parse_text("base: &b {a: 1, b: 2}\nother: &o {b: 3, c: 4}\n"
                            "x: {<<: [*b, *o], a: 0}\n", "m.yaml")
    assert not doc.problems
    assert doc.data["x"] == {"a": 0, "b": 2, "c": 4}


def test_tiny_nodes_are_refused_while_composing(tmp_path):
    """A file of tiny nodes once took 80 s and 1.4 GB: the node limit was counted after
    the whole document had been composed. Now composing stops at the limit.

    Measured in a child of its own: its CPU time (load on the machine does not inflate
    it) and how much its peak resident memory grew while loading (the interpreter and
    the package's imports come before, and vary with what the package imports).
    """
    path = tmp_path / "tiny.yaml"
    path.write_text("workflow: [" + ",".join(["1"] * (source.MAX_BYTES // 2 - 8)) + "]\n")
    assert path.stat().st_size <= source.MAX_BYTES
    code = f"""
import json, re, time
from orchestratord.language import source

def kb(field):  # this process's own figures: ru_maxrss may start at its parent's peak
    with open("/proc/self/status") as status:
        return int(re.search(field + r":\\s+(\\d+) kB", status.read()).group(1))

before = kb("VmRSS")
doc = source.load_file({str(path)!r})
print(json.dumps({{"problems": [str(p) for p in doc.problems], "too_large": doc.too_large,
                  "cpu": time.process_time(), "rss_kb": kb("VmHWM") - before}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=DEADLINE, check=True).stdout
    measured = json.loads(out)
    assert measured["too_large"]
    assert f"more than {source.MAX_NODES} values" in measured["problems"][0]
    assert measured["cpu"] < 4, measured
    assert measured["rss_kb"] < 100 * 1024, measured


def test_a_workflow_of_ten_thousand_steps_is_not_refused(tmp_path):
    """The engine runs linearly to 10,000 steps (bench/README.md); such a file, 70,000
    values, was refused by a limit of 50,000."""
    skills = tmp_path / "skills"
    write_skill(skills, "s", {"go": {"command": ECHO}})
    workflow = tmp_path / "wide.yaml"
    workflow.write_text("workflow:\n  name: wide\n  steps:\n" + "".join(
        f"    - {{id: s{i}, skill: s, action: go}}\n" for i in range(10_000)))
    code, err, _ = validate(workflow, skills=skills)
    assert code == 0, err


def test_four_megabytes_are_refused_before_parsing(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("workflow: [" + ",".join(["1"] * (2 * 2**20)) + "]\n")
    code, err, _ = validate(path)
    assert code == 2 and f"{path}:1:1: file is larger than {source.MAX_BYTES} bytes" in err


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _hold_open_for_writing(path: Path) -> threading.Thread:
    """A writer that never writes: a blocking read of the FIFO would wait for ever."""
    def hold() -> None:
        try:
            fd = os.open(path, os.O_WRONLY)
        except OSError:
            return
        time.sleep(DEADLINE + 5)
        os.close(fd)
    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    return thread


def test_validate_refuses_what_is_not_a_regular_file(tmp_path):
    """A FIFO hung validate for ever; /dev/zero gave a MemoryError traceback."""
    fifo = _fifo(tmp_path / "wf.yaml")
    _hold_open_for_writing(fifo)
    (tmp_path / "dir.yaml").mkdir()
    (tmp_path / "zero.yaml").symlink_to("/dev/zero")
    code, err, elapsed = validate(fifo, tmp_path / "dir.yaml", tmp_path / "zero.yaml",
                                  Path("/dev/zero"))
    assert code == 2
    assert f"{fifo}:1:1: is a FIFO, not a regular file" in err
    assert f"{tmp_path / 'dir.yaml'}:1:1: is a directory, not a regular file" in err
    assert f"{tmp_path / 'zero.yaml'}:1:1: is a character device, not a regular file" in err
    assert "/dev/zero:1:1: is a character device" in err
    assert elapsed < DEADLINE


@pytest.mark.parametrize("which", ["SKILL.md", "actions.yaml"])
def test_skill_files_that_are_fifos_are_refused(tmp_path, which):
    skills = tmp_path / "skills"
    directory = write_skill(skills, "s", {"go": {"command": ECHO}})
    (directory / which).unlink()
    _fifo(directory / which)
    _hold_open_for_writing(directory / which)
    workflow = tmp_path / "wf.yaml"
    workflow.write_text("workflow: {name: w, steps: [{skill: s, action: go}]}\n")
    code, err, _ = validate(workflow, skills=skills)
    assert code == 2 and f"{directory / which}:1:1: is a FIFO, not a regular file" in err
    with pytest.raises(DefinitionError, match="is a FIFO"):
        discover([skills])


def test_settings_file_that_is_a_fifo_is_refused(tmp_path):
    fifo = _fifo(tmp_path / "settings.json")
    _hold_open_for_writing(fifo)
    started = time.monotonic()
    with pytest.raises(DefinitionError, match=f"{fifo}:1:1: is a FIFO"):
        load_settings(fifo)
    assert time.monotonic() - started < 5


def test_run_of_a_fifo_is_refused_not_sent_to_the_daemon(tmp_path):
    fifo = _fifo(tmp_path / "wf.yaml")
    _hold_open_for_writing(fifo)
    proc = subprocess.run([sys.executable, "-m", "orchestratord.cli", "--state",
                           str(tmp_path / "state.db"), "run", str(fifo)], capture_output=True,
                          text=True, timeout=DEADLINE, stdin=subprocess.DEVNULL)
    assert proc.returncode == 2 and f"{fifo}:1:1: is a FIFO, not a regular file" in proc.stderr
