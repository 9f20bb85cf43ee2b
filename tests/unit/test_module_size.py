"""No module of the package grows past 400 lines: a longer one holds more than one
concern, and is split by concern (README.md, "Layout"), not by line count."""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "orchestratord"
LIMIT = 400


def test_no_module_is_over_the_limit() -> None:
    long = {str(p.relative_to(PACKAGE)): n for p in sorted(PACKAGE.rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > LIMIT}
    assert long == {}, f"modules over {LIMIT} lines: split them by concern"
