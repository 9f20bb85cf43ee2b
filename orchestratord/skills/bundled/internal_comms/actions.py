"""internal-comms actions: `status_report` of the run the step belongs to."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

from ....core.errors import StepFailure
from ....engine.context import StepContext
from ....reports.markdown import render_markdown
from ....reports.report import report_model
from ... import atomic_write, section, state_dir

SKILL = "internal-comms"
WEBHOOK_TIMEOUT = 30.0


async def status_report(params: Mapping[str, Any], ctx: StepContext) -> dict[str, Any]:
    """Render the run so far to Markdown; write it, log it, deliver it if asked."""
    if ctx.run_view is None:
        raise StepFailure("status_report needs the run's stored state, and this step runs "
                          "without a state store (run it through the engine)")
    settings = section(ctx, SKILL)
    # The report leaves the state database (a file, the log, a webhook): the run view
    # comes with the run's secrets masked, as every rendering of a run does.
    view = await ctx.run_view()
    run = view["run"]
    report = await asyncio.to_thread(report_model, run, view["steps"], view["attempts"],
                                     view["events"], now=time.time())
    markdown = render_markdown(report, title=params.get("title"), brief=True)
    data = markdown.encode()
    path = report_path(params.get("path"), settings.get("report_dir"), state_dir(ctx), run.id)
    await asyncio.to_thread(atomic_write, path, data)
    ctx.log.info("status report %s:\n%s", path, markdown)
    result = {"path": str(path), "steps": report["summary"]["steps"],
              "failed": report["summary"]["failed_steps"],
              "markdown_bytes": len(data), "delivered": False}
    webhook = params.get("webhook") or settings.get("webhook")
    if webhook:
        await deliver(webhook, {"run_id": run.id, "workflow": run.workflow,
                                "markdown": markdown}, result)
        result["delivered"] = True
        ctx.log.info("status report delivered to %s", webhook)
    return result


def report_path(value: str | None, report_dir: str | None, base: Path, run_id: str) -> Path:
    """params.path, else <report_dir>/<run id>.md; relative paths are under the state dir."""
    path = Path(value) if value else Path(report_dir or base / "reports") / f"{run_id}.md"
    return path if path.is_absolute() else base / path


async def deliver(url: str, body: dict[str, Any], result: dict[str, Any]) -> None:
    """POST body as JSON; unreachable or 5xx is retryable, 4xx is not (asking again
    will not change the answer). The report file exists either way: it is in `result`."""
    try:
        async with aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=WEBHOOK_TIMEOUT)) as session:
            async with session.post(url, json=body) as response:
                if response.status < 300:
                    return
                detail = (await response.text())[:200].strip()
                raise StepFailure(
                    f"webhook {url} answered HTTP {response.status}"
                    + (f": {detail}" if detail else ""),
                    retryable=response.status >= 500, result=result)
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise StepFailure(f"webhook {url} not reachable: {type(exc).__name__}: {exc}",
                          retryable=True, result=result) from None
