"""health-monitoring `check`: units, endpoints and disks, all at once, one verdict.

An unhealthy verdict is a retryable StepFailure carrying the full result, so a retry
policy (the step's, or this action's default in actions.yaml) waits for services that
are still coming up, and the run history shows every attempt's checks.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiohttp
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ....core.errors import StepFailure
from ....engine.runners import systemctl as systemd
from ....language.model import Timeout
from ... import section, state_dir

SKILL = "health-monitoring"
KINDS = ("units", "endpoints", "disks")
BODY_SNIPPET = 200


class Endpoint(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(pattern=r"^https?://")
    status: int = Field(200, ge=100, le=599)
    max_latency: Timeout = 2.0
    unix_socket: str | None = None


class Disk(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(min_length=1)
    min_free: float = Field(0.05, ge=0.0, le=1.0)


class Checks(BaseModel):
    """What to check; the same shape for step params and the settings section."""

    model_config = ConfigDict(extra="ignore")  # the settings section may hold more keys
    units: list[str] = Field(default_factory=list)
    endpoints: list[Endpoint] = Field(default_factory=list)
    disks: list[Disk] = Field(default_factory=list)


def _parse(data: dict[str, Any], where: str) -> Checks:
    try:
        return Checks.model_validate(data)
    except ValidationError as exc:
        errors = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                           for e in exc.errors())
        raise StepFailure(f"{where}: {errors}") from None


def plan(params: dict[str, Any] | None, ctx: Any) -> Checks:
    """The checks a step asks for; else the settings' defaults; else the state_dir disk.

    A step that names any checks gets exactly those: defaults fill in only for a step
    that names none, so `check` with just `disks:` never also probes the default units.
    """
    params = params or {}
    if any(params.get(k) for k in KINDS):
        return _parse(params, "params")
    configured = _parse(section(ctx, SKILL), f"settings skills.{SKILL}")
    if any(getattr(configured, k) for k in KINDS):
        return configured
    return Checks(disks=[Disk(path=str(state_dir(ctx)))])


def _outcome(kind: str, target: str, ok: bool, detail: str, started: float) -> dict[str, Any]:
    return {"kind": kind, "target": target, "ok": ok, "detail": detail,
            "latency_ms": round((time.monotonic() - started) * 1000, 1)}


async def check_unit(unit: str) -> dict[str, Any]:
    started = time.monotonic()
    try:
        state = await systemd.show(unit)
    except (systemd.SystemdUnavailable, systemd.SystemctlError) as exc:
        return _outcome("unit", unit, False, str(exc), started)
    return _outcome("unit", unit, state.active, state.describe(), started)


async def check_endpoint(endpoint: Endpoint) -> dict[str, Any]:
    """GET the URL (over a unix socket if given); ok if the status matches in time."""
    target = endpoint.url + (f" via {endpoint.unix_socket}" if endpoint.unix_socket else "")
    limit = endpoint.max_latency
    connector = aiohttp.UnixConnector(path=endpoint.unix_socket) if endpoint.unix_socket else None
    started = time.monotonic()
    try:
        # One bound for connect, headers and body: an answer later than max_latency is a
        # failure whatever it says, and a hung server must not hold the check.
        async with aiohttp.ClientSession(connector=connector,
                                         timeout=aiohttp.ClientTimeout(total=limit)) as session:
            async with session.get(endpoint.url, allow_redirects=False) as response:
                body = await response.text(errors="replace")
    except TimeoutError:
        return _outcome("endpoint", target, False, f"no answer within max_latency {limit:g} s",
                        started)
    except aiohttp.ClientConnectorError as exc:
        # aiohttp's own text adds "ssl:default" and repeats the address; say it plainly.
        error = exc.os_error
        reason = (os.strerror(error.errno) if isinstance(error.errno, int) and error.errno > 0
                  else error.strerror or str(error))  # resolver errors have errno < 0
        return _outcome("endpoint", target, False, f"cannot connect: {reason}", started)
    except aiohttp.ClientError as exc:
        return _outcome("endpoint", target, False, f"request failed: {exc}", started)
    elapsed = time.monotonic() - started
    if response.status != endpoint.status:
        snippet = " ".join(body.split())[:BODY_SNIPPET]
        return _outcome("endpoint", target, False,
                        f"HTTP {response.status}, expected {endpoint.status}"
                        + (f": {snippet}" if snippet else ""), started)
    if elapsed > limit:
        return _outcome("endpoint", target, False,
                        f"HTTP {response.status} after {elapsed:.3f} s, "
                        f"over max_latency {limit:g} s",
                        started)
    return _outcome("endpoint", target, True, f"HTTP {response.status} in {elapsed * 1000:.0f} ms",
                    started)


def _free_share(path: str) -> tuple[float, int, int]:
    stats = os.statvfs(path)
    total = stats.f_blocks * stats.f_frsize
    free = stats.f_bavail * stats.f_frsize  # what an unprivileged writer may still use
    return (free / total if total else 0.0), free, total


def _size(n: float) -> str:
    """Bytes for a person: 512 B, 3.2 GiB."""
    if n < 1024:
        return f"{int(n)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            break
    return f"{n:.1f} {unit}"


async def check_disk(disk: Disk) -> dict[str, Any]:
    started = time.monotonic()
    if not Path(disk.path).exists():
        return _outcome("disk", disk.path, False, "no such path", started)
    try:
        # statvfs can block on a hung network file system: keep it off the event loop.
        share, free, total = await asyncio.to_thread(_free_share, disk.path)
    except OSError as exc:
        return _outcome("disk", disk.path, False, f"statvfs failed: {exc}", started)
    detail = (f"{share:.1%} free ({_size(free)} of {_size(total)}), "
              f"minimum {disk.min_free:.1%}")
    return _outcome("disk", disk.path, share >= disk.min_free, detail, started)


async def run_checks(checks: Checks) -> dict[str, Any]:
    """Every check concurrently; {healthy, checks: [...]} in the order they were asked."""
    probes: list[Any] = [check_unit(u) for u in checks.units]
    probes += [check_endpoint(e) for e in checks.endpoints]
    probes += [check_disk(d) for d in checks.disks]
    outcomes = list(await asyncio.gather(*probes))
    return {"healthy": all(o["ok"] for o in outcomes), "checks": outcomes}


def summary(failing: Iterable[dict[str, Any]]) -> str:
    return "; ".join(f"{o['kind']} {o['target']}: {o['detail']}" for o in failing)


async def check(params: dict[str, Any] | None, ctx: Any) -> dict[str, Any]:
    """The `check` action: fails (retryably) unless every check passes."""
    result = await run_checks(plan(params, ctx))
    failing = [o for o in result["checks"] if not o["ok"]]
    for outcome in result["checks"]:
        ctx.log.info("%s %s: %s (%s)", outcome["kind"], outcome["target"],
                     "ok" if outcome["ok"] else "FAILED", outcome["detail"])
    if failing:
        raise StepFailure(f"unhealthy: {len(failing)} of {len(result['checks'])} checks failed: "
                          + summary(failing), retryable=True, result=result)
    return result
