"""The aidb settings section: what --check accepts and refuses, and where it says so."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def check(tmp_path, aidb) -> subprocess.CompletedProcess:
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"aidb": aidb}))
    return subprocess.run([sys.executable, "-m", "orchestratord.daemon", "--check",
                           "--settings", str(path)], capture_output=True, text=True, timeout=60)


def test_a_full_aidb_section_is_valid(tmp_path):
    result = check(tmp_path, {"url": "http://127.0.0.1:8002", "api_key_file": "/run/key",
                              "publish": True, "refresh_interval": "15m",
                              "undelivered_alert_after": "1h", "api_listen": "127.0.0.1:8091"})
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("aidb, says", [
    ({"url": "ftp://x"}, "aidb.url"),
    ({"api_listen": "127.0.0.1:8091"}, "api_listen needs api_key_file"),
    ({"api_listen": "0.0.0.0:8091", "api_key_file": "/k"}, "aidb.api_listen"),
    ({"refresh_interval": "soon"}, "aidb.refresh_interval"),
    ({"publsh": True}, "publsh"),
])
def test_mistakes_are_refused_with_exit_78_naming_the_field(tmp_path, aidb, says):
    result = check(tmp_path, aidb)
    assert result.returncode == 78 and says in result.stderr, result.stderr
