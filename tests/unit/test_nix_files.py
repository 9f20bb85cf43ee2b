"""The Nix files stay short enough to read: a concern that grows gets a file of its own."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import unavailable

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 400


def test_no_nix_file_is_over_400_lines():
    """Regression: module.nix had grown to 544 lines, workflow-options.nix to 511."""
    if not (ROOT / "nix").is_dir():  # the package's check phase: its source has no nix/
        unavailable("nix/ is not in this source tree")
    long = {str(p.relative_to(ROOT)): n for p in sorted((ROOT / "nix").rglob("*.nix"))
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}, "split these by concern, as nix/module.nix's map shows"
