"""The HTTP runner: params as JSON to a URL; 2xx ok, 5xx/429/connection errors retryable."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from ...core.errors import StepFailure
from ..context import StepContext

EXCERPT = 200


async def run_http(url: str, params: Any, ctx: StepContext, *, session: aiohttp.ClientSession,
                   method: str = "POST", headers: Mapping[str, str] | None = None,
                   max_response: int = 16 * 1024 * 1024) -> Any:
    """Send one request; returns the JSON (or text) answer or raises StepFailure."""
    sent = {"Idempotency-Key": ctx.idempotency_key, "X-Orchestrator-Run-Id": ctx.run_id,
            "X-Orchestrator-Step-Id": ctx.step_id, "X-Orchestrator-Attempt": str(ctx.attempt),
            **(headers or {})}
    body: dict[str, Any] = {}
    if method in ("GET", "DELETE"):
        body["params"] = {k: str(v) for k, v in (params or {}).items()
                          if isinstance(v, (str, int, float, bool))}
    else:
        body["json"] = params
    what = f"{method} {url}"
    try:
        async with session.request(method, url, headers=sent, allow_redirects=False,
                                   **body) as response:
            data = await response.content.read(max_response + 1)
            status = response.status
    except aiohttp.ClientError as exc:
        raise StepFailure(f"{what} failed: {exc.__class__.__name__}: {exc}",
                          retryable=True) from None
    except TimeoutError:
        raise StepFailure(f"{what} timed out", retryable=True) from None
    if len(data) > max_response:
        raise StepFailure(f"{what}: response larger than {max_response} bytes")
    text = data.decode("utf-8", "replace")
    if not 200 <= status < 300:
        excerpt = " ".join(text.split())[:EXCERPT]
        raise StepFailure(f"{what} answered {status}" + (f": {excerpt}" if excerpt else ""),
                          retryable=status >= 500 or status == 429,
                          result={"status": status, "body": excerpt})
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        return {"body": text}
