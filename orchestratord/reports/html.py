"""The execution report as one self-contained HTML file.

Jinja2 templates (shipped in orchestratord/reports/templates) with autoescaping on: every value
that came from a run — params, results, errors, stderr — is data, never markup. The
file loads nothing: styles are inline, pictures are inline SVG, there is no script, so
it can be mailed, attached to a ticket or opened from a journal link offline.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

import jinja2

from ..core.durations import format_duration
from . import layout as report_layout
from .formatting import when


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("orchestratord.reports", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters.update(when=when, took=format_duration, css=css_token, pretty=pretty)
    return env


def render_html(report: dict[str, Any]) -> str:
    template = _environment().get_template("report.html.j2")
    return template.render(report=report, run=report["run"],
                           timeline=report_layout.timeline(report),
                           dag=report_layout.dag(report),
                           statuses=_legend(report))


def css_token(value: Any) -> str:
    """A status as a class name: statuses are a fixed vocabulary, but keep it a token."""
    return re.sub(r"[^a-z0-9_-]", "-", str(value).lower())


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False, default=str)


def _legend(report: dict[str, Any]) -> list[str]:
    """The statuses present in the run, for the pictures' legends."""
    seen: dict[str, None] = {}
    for s in report["steps"]:
        seen.setdefault(s["status"])
    for a in report["attempts"]:
        seen.setdefault(a["status"])
    return list(seen)
