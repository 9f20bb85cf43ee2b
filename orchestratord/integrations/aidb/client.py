"""AIDB's HTTP API as the orchestrator uses it: skills, import, history.

Errors are mapped where they enter: a connection failure, a timeout, a 5xx or a 429 is
`AidbUnavailable` (worth another try later), a 401/403 is `AidbUnauthorized` (the key is
missing or wrong: trying again will not help until someone fixes it), any other 4xx is
`AidbRejected` (this request is wrong).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

from ...core.errors import OrchestratorError


class AidbError(OrchestratorError):
    """AIDB could not be used (base of the three below)."""


class AidbUnavailable(AidbError):
    """Not reachable, too slow, or failing (5xx, 429): try again later."""


class AidbUnauthorized(AidbError):
    """AIDB refused the API key (401 without one, 403 with a wrong one)."""


class AidbRejected(AidbError):
    """AIDB refused the request as invalid (4xx): sending it again will not help."""


def read_key(path: Path | None) -> str | None:
    """The API key in path (surrounding whitespace removed), or None without a file."""
    if path is None:
        return None
    try:
        key = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise AidbError(f"aidb.api_key_file {path}: cannot read it: {exc.strerror}; "
                        "check the path and that the daemon may read it") from exc
    if not key:
        raise AidbError(f"aidb.api_key_file {path}: the file is empty; put the key in it")
    return key


class AidbClient:
    """One aiohttp session to AIDB at url; close with `await close()`."""

    def __init__(self, url: str, key: str | None = None, timeout: float = 10.0):
        self.url = url.rstrip("/")
        self.key = key
        self.timeout = timeout
        self._http: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def skills(self, include_pending: bool = False) -> list[dict[str, Any]]:
        answer = await self._request("GET", "/skills", params={
            "include_pending": "true" if include_pending else "false"})
        if not isinstance(answer, list):
            raise AidbRejected(f"GET {self.url}/skills: expected a list, got "
                               f"{type(answer).__name__}")
        return [r for r in answer if isinstance(r, dict) and r.get("slug")]

    async def import_skill(self, body: dict[str, Any]) -> Any:
        return await self._request("POST", "/skills/import", body=body, write=True)

    async def record(self, body: dict[str, Any]) -> Any:
        return await self._request("POST", "/history/record", body=body, write=True)

    async def history_stats(self) -> Any:
        return await self._request("GET", "/history/stats")

    async def _request(self, method: str, path: str, *, params: dict[str, str] | None = None,
                       body: Any = None, write: bool = False) -> Any:
        if self._http is None:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout))
        headers = {"X-API-Key": self.key} if write and self.key else {}
        where = f"{method} {self.url}{path}"
        try:
            async with self._http.request(method, self.url + path, params=params, json=body,
                                          headers=headers) as response:
                text = await response.text(errors="replace")
                status = response.status
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise AidbUnavailable(f"{where}: {type(exc).__name__}: {exc or 'timed out'}") from None
        if status in (401, 403):
            raise AidbUnauthorized(
                f"{where}: HTTP {status}, AIDB refused the API key "
                f"({'none was sent' if not self.key else 'the key sent is wrong'}): put "
                "AIDB's key in the file aidb.api_key_file names")
        if status >= 500 or status == 429:
            raise AidbUnavailable(f"{where}: HTTP {status}: {text[:200]}")
        if status >= 400:
            raise AidbRejected(f"{where}: HTTP {status}: {text[:300]}")
        try:
            return json.loads(text) if text else None
        except json.JSONDecodeError:
            raise AidbRejected(f"{where}: the answer is not JSON: {text[:200]!r}") from None
