"""Daemon settings: what `orchestratord --check` (and a NixOS build) says of a file."""

from __future__ import annotations

import json

from orchestratord.core.statuses import ExitCode
from orchestratord.daemon.main import main


def test_check_accepts_valid_settings(tmp_path, capsys):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"state_dir": "/var/lib/agent-orchestrator",
                                "metrics_listen": "127.0.0.1:9464",
                                "skills": {"nixos-deployment": {"allow_switch": True}}}))
    assert main(["--check", "--settings", str(path)]) == 0
    assert capsys.readouterr().out == f"{path}: valid settings\n"


def test_check_names_file_line_and_field_of_every_problem(tmp_path, capsys):
    path = tmp_path / "settings.yaml"
    path.write_text("state_dir: /var/lib/x\nmax_active_runs: 0\nmetrics_listen: nope\n"
                    "alerts: {webhooks: [{url: ftp://x}]}\n")
    assert main(["--check", "--settings", str(path)]) == ExitCode.CONFIG
    err = capsys.readouterr().err
    assert f"{path}:2:18: max_active_runs: must be greater than or equal to 1" in err
    assert f"{path}:3:17: metrics_listen:" in err
    assert f"{path}:4:" in err and "alerts.webhooks[0].url" in err


def test_a_missing_socket_group_is_a_settings_error_at_its_line(tmp_path, capsys):
    """Regression: --check passed a socket_group naming no group, and the daemon then
    died with a KeyError traceback (exit 1) and was restarted in a loop."""
    path = tmp_path / "settings.yaml"
    path.write_text(f"state_dir: {tmp_path}\nsocket_group: no-such-group-here\n")
    assert main(["--check", "--settings", str(path)]) == ExitCode.CONFIG
    err = capsys.readouterr().err
    assert f"{path}:2:15: socket_group: no group 'no-such-group-here' on this host" in err
    # A build sandbox has none of the system's groups: the NixOS module skips this check.
    assert main(["--check", "--skip-host-checks", "--settings", str(path)]) == 0


def test_the_daemon_exits_78_on_a_missing_socket_group(tmp_path):
    """The daemon itself refuses the group with the same message, ExitCode.CONFIG, no traceback
    (its unit does not restart on 78)."""
    import subprocess
    import sys
    path = tmp_path / "settings.yaml"
    path.write_text(f"state_dir: {tmp_path}\nsocket: {tmp_path}/control.sock\n"
                    "socket_group: no-such-group-here\n")
    done = subprocess.run([sys.executable, "-m", "orchestratord.daemon", "--settings", str(path),
                           "--log-target", "stderr"], capture_output=True, text=True, timeout=60)
    assert done.returncode == ExitCode.CONFIG, done.stderr
    assert f"{path}:3:15: socket_group: no group 'no-such-group-here' on this host" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "control.sock").exists()
