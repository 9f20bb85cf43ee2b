"""Daemon settings: what `orchestratord --check` (and a NixOS build) says of a file."""

from __future__ import annotations

import json

from orchestratord.daemon import EX_CONFIG, main


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
    assert main(["--check", "--settings", str(path)]) == EX_CONFIG
    err = capsys.readouterr().err
    assert f"{path}:2:18: max_active_runs: must be greater than or equal to 1" in err
    assert f"{path}:3:17: metrics_listen:" in err
    assert f"{path}:4:" in err and "alerts.webhooks[0].url" in err
