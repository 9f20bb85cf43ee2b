"""The HTML execution report, opened in headless Chromium: what it shows is what happened.

The run is real (real Engine, SQLite file, child processes); the report is rendered,
loaded by Chromium with no network, and the DOM Chromium built is read back: one bar
per attempt, one DAG node per step coloured by its status, the failure's reason and
stderr. A screenshot is decoded too, to see the colours did paint.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import zlib
from html.parser import HTMLParser
from pathlib import Path

import aiohttp
import pytest

from orchestratord.reports.report import build_report, render
from orchestratord.store.sqlite import Store
from tests.conftest import unavailable
from tests.integration.report_run import NASTY, SECRET, make_reported_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def chromium() -> str:
    if CHROMIUM is None:
        unavailable("chromium is not installed (apt-get install chromium)")
    return CHROMIUM


def browse(chromium: str, page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    """Chromium, headless, offline apart from the file, with a throwaway profile."""
    return subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--no-first-run", "--disable-extensions",
         f"--user-data-dir={profile}", *extra, page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True)


class Dom(HTMLParser):
    """Elements (tag, attributes) and the text of each section, from Chromium's DOM."""

    def __init__(self, html: str):
        super().__init__()
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.sections: dict[str, str] = {}
        self._section: str | None = None
        self._hidden = 0
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        self.elements.append((tag, attributes))
        if tag == "section":
            self._section = attributes.get("id")
            self.sections[self._section] = ""
        if tag in ("style", "title", "script"):
            self._hidden += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "title", "script"):
            self._hidden -= 1
        if tag == "section":
            self._section = None

    def handle_data(self, data: str) -> None:
        if self._section and not self._hidden:
            self.sections[self._section] += data

    def having(self, *classes: str) -> list[dict[str, str]]:
        return [a for _, a in self.elements if set(classes) <= set(a.get("class", "").split())]


def png_colours(path: Path) -> set[tuple[int, int, int]]:
    """The RGB colours painted in a PNG screenshot (8-bit RGB or RGBA, as Chromium writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour in (2, 6), (depth, colour)
            bpp = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw, stride = zlib.decompress(idat), width * bpp
    previous, colours = bytearray(stride), set()
    for row in range(height):
        start = row * (stride + 1)
        filt, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, corner = previous[i], previous[i - bpp] if i >= bpp else 0
            if filt == 1:
                line[i] = (line[i] + left) & 255
            elif filt == 2:
                line[i] = (line[i] + up) & 255
            elif filt == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif filt == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                best = left if pa <= pb and pa <= pc else up if pb <= pc else corner
                line[i] = (line[i] + best) & 255
        colours.update(tuple(line[i:i + 3]) for i in range(0, stride, bpp))
        previous = line
    return colours


async def test_html_report_in_chromium(tmp_path, chromium):
    reported = await make_reported_run(tmp_path)
    store = await Store.open(reported.db)
    try:
        html = render(await build_report(store, reported.run_id), "html")
        steps = await store.steps(reported.run_id)
        attempts = await store.attempts(reported.run_id)
    finally:
        await store.close()
    page = tmp_path / "report.html"
    page.write_text(html)

    # Self-contained: nothing to fetch, nothing to run.
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert not re.search(r"url\(\s*['\"]?\s*(?:https?:)?//", html, re.I)
    assert "<script" not in html.lower() and "<link" not in html.lower()
    assert SECRET not in html

    dom = Dom(browse(chromium, page, tmp_path / "profile", "--dump-dom").stdout)

    bars = dom.having("bar", "attempt")
    assert len(bars) == sum(1 for a in attempts if a.kind == "action") == 6
    assert sorted((b["data-step"], int(b["data-attempt"]), b["data-status"]) for b in bars) == \
        sorted((a.step_id, a.attempt, a.status) for a in attempts if a.kind == "action")
    compensations = dom.having("bar", "compensation")
    assert sorted(b["data-step"] for b in compensations) == \
        sorted(a.step_id for a in attempts if a.kind == "rollback") == ["lint", "prepare"]

    nodes = dom.having("node")
    assert len(nodes) == len(steps) == 5
    for step in steps:
        [node] = [n for n in nodes if n["data-step"] == step.step_id]
        assert f"status-{step.status}" in node["class"].split(), (step.step_id, node)
    assert len(dom.having("edge")) == 5

    failures = dom.sections["failures"]
    assert "build: failed" in failures and "exit status 3" in failures
    assert "error: missing dependency libfoo" in failures
    assert "upload with *** refused" in failures
    assert "mirror unreachable (try 1)" in dom.sections["retries"]
    rollback = dom.sections["rollback"]
    assert "lint → fetch → prepare" in rollback and "no rollback action declared" in rollback
    # Params and results are shown as text: the markup in them built no elements.
    assert NASTY in dom.sections["data"]
    assert not [a for tag, a in dom.elements if tag in ("script", "b")]
    assert "***" in dom.sections["data"]

    shot = tmp_path / "report.png"
    browse(chromium, page, tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,1800",
           "--hide-scrollbars")
    colours = png_colours(shot)
    for name, rgb in {"failed": (0xc6, 0x28, 0x28), "succeeded": (0x2e, 0x7d, 0x32),
                      "compensated": (0x6a, 0x1b, 0x9a)}.items():
        assert rgb in colours, f"no {name} colour painted in the screenshot"


async def test_report_through_the_daemon(tmp_path, chromium):
    """`orchestratorctl report` against a running orchestratord: the same report, any format."""
    from tests.integration.daemon_process import Daemon
    (tmp_path / "workflows").mkdir()
    (tmp_path / "settings.json").write_text(json.dumps({
        "state_dir": str(tmp_path / "state"), "workflows_dir": str(tmp_path / "workflows"),
        "socket": str(tmp_path / "run" / "control.sock")}))
    reported = await make_reported_run(tmp_path, tmp_path / "state" / "state.db")
    daemon = Daemon(tmp_path)
    try:
        daemon.notify.wait_for("READY=1")
        page = tmp_path / "via-daemon.html"
        done = daemon.ctl("report", reported.run_id, "--format", "html", "-o", str(page))
        assert done.returncode == 0, done.stderr
        dom = Dom(browse(chromium, page, tmp_path / "profile", "--dump-dom").stdout)
        assert len(dom.having("bar", "attempt")) == 6 and len(dom.having("node")) == 5
        assert "error: missing dependency libfoo" in dom.sections["failures"]

        md = daemon.ctl("report", reported.run_id)
        assert md.returncode == 0 and "## Rollback" in md.stdout and SECRET not in md.stdout
        from orchestratord.cli.client import Client
        from orchestratord.core.errors import ParamsError  # a 400: invalid input, exit 2
        async with Client(tmp_path / "run" / "control.sock") as client:
            model = await client.call("GET", f"/runs/{reported.run_id}/report")
            assert model["summary"]["attempts"] == 6
            assert model["run"]["params"]["api_token"] == "***"
            with pytest.raises(ParamsError, match="format: expected one of md, json, html"):
                await client.call("GET", f"/runs/{reported.run_id}/report?format=pdf")
        # A browser or curl on the socket gets the page itself.
        connector = aiohttp.UnixConnector(path=str(tmp_path / "run" / "control.sock"))
        async with aiohttp.ClientSession(connector=connector) as http:
            async with http.get(f"http://orchestratord/runs/{reported.run_id}/report",
                                params={"format": "html"}) as response:
                assert response.status == 200 and response.content_type == "text/html"
                assert (await response.text()).count('class="bar attempt') == 6
        missing = daemon.ctl("report", "nosuchrun")
        assert missing.returncode == 7 and "no run 'nosuchrun'" in missing.stderr
    finally:
        assert daemon.stop() == 0
