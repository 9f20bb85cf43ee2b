"""ai-service-management: start, stop, restart and status of named services.

Workflows name services ("model", "embeddings"), never units: the settings map names
to systemd units, so a workflow cannot start an arbitrary unit of the host, and the
same workflow runs on hosts whose units are named differently.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from ....core.errors import StepFailure
from ....engine.runners import systemctl as systemd
from ....language.model import parse_duration
from ... import section

SKILL = "ai-service-management"
DEFAULT_START_TIMEOUT = 60.0
DEFAULT_START_SETTLE = 1.0  # seconds a started unit must stay active
JOURNAL_LINES = 20


def _services(ctx: Any) -> dict[str, str]:
    services = section(ctx, SKILL).get("services") or {}
    if not isinstance(services, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v for k, v in services.items()):
        raise StepFailure(f"settings skills.{SKILL}.services: expected a mapping of service "
                          f"names to systemd unit names, got {services!r}")
    return services


def _duration(ctx: Any, key: str, default: float, *, zero: bool = False) -> float:
    raw = section(ctx, SKILL).get(key, default)
    try:
        value = parse_duration(raw)
        if not isinstance(value, float) or value < 0 or (value == 0 and not zero):
            raise ValueError(f"{raw!r} is not a {'' if zero else 'positive '}duration")
    except ValueError as exc:
        raise StepFailure(f"settings skills.{SKILL}.{key}: {exc}") from None
    return value


def resolve(service: str, ctx: Any) -> list[tuple[str, str]]:
    """(name, unit) pairs that `service` (a configured name or `all`) stands for."""
    services = _services(ctx)
    if service == "all":
        return sorted(services.items())
    if service in services:
        return [(service, services[service])]
    known = ", ".join(sorted(services)) or "none are configured"
    raise StepFailure(f"unknown service '{service}'; known services: {known} "
                      f"(settings skills.{SKILL}.services)")


def _entry(name: str, state: systemd.UnitState) -> dict[str, Any]:
    return {"name": name, "unit": state.unit, "state": state.active_state,
            "sub_state": state.sub_state, "result": state.result}


def _nothing(action: str) -> dict[str, Any]:
    return {"services": [], "message": f"no services configured (settings skills.{SKILL}."
                                       f"services is empty); nothing to {action}"}


async def _each(pairs: list[tuple[str, str]],
                fn: Callable[[str, str], Coroutine[Any, Any, Any]]) -> list[Any]:
    """fn for every (name, unit) at once; systemd problems become non-retryable failures.

    A TaskGroup, not gather: when one unit cannot be started the others' waits are
    cancelled instead of polling on, unowned, until their deadline.
    """
    reason = systemd.unavailable_reason()
    if reason is not None:
        raise StepFailure(reason)
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(fn(name, unit)) for name, unit in pairs]
    except* (systemd.SystemdUnavailable, systemd.SystemctlError) as failures:
        raise StepFailure("; ".join(str(e) for e in failures.exceptions)) from None
    return [task.result() for task in tasks]


async def _await_active(name: str, unit: str, deadline: float, settle: float) -> dict[str, Any]:
    """Wait for a queued start/restart job's outcome; active is the only success.

    A Type=simple service is `active` as soon as its process runs, so one that dies at
    once would pass as started: it must also still be active `settle` seconds later.
    """
    state, settled = await systemd.wait_settled(unit, deadline)
    if state.active and settled and settle > 0:
        await asyncio.sleep(settle)
        state = await systemd.show(unit)
    entry = _entry(name, state)
    if state.active and settled:
        return entry
    if not settled:
        entry["error"] = f"not active before the start timeout (still {state.describe()})"
        entry["retryable"] = True
    elif state.failed:
        entry["error"] = f"failed to start: {state.describe()}"
    else:
        entry["error"] = f"started but is no longer running: {state.describe()}"
    entry["journal"] = await systemd.journal_tail(unit, JOURNAL_LINES)
    return entry


async def _start_like(params: dict[str, Any], ctx: Any, verb: str,
                      queue: Callable[[str], Awaitable[None]]) -> dict[str, Any]:
    pairs = resolve(params["service"], ctx)
    if not pairs:
        return _nothing(verb)
    deadline = asyncio.get_running_loop().time() + _duration(ctx, "start_timeout",
                                                             DEFAULT_START_TIMEOUT)
    settle = _duration(ctx, "start_settle", DEFAULT_START_SETTLE, zero=True)

    async def one(name: str, unit: str) -> dict[str, Any]:
        ctx.log.info("%s %s (%s)", verb, name, unit)
        await queue(unit)
        return await _await_active(name, unit, deadline, settle)

    entries = await _each(pairs, one)
    bad = [e for e in entries if "error" in e]
    result = {"services": [{k: v for k, v in e.items() if k not in ("journal", "retryable")}
                           for e in entries]}
    if bad:
        parts = []
        for e in bad:
            part = f"{e['name']} ({e['unit']}): {e['error']}"
            if e["journal"]:
                part += f"\n--- journalctl -u {e['unit']} -n {JOURNAL_LINES} ---\n{e['journal']}"
            parts.append(part)
        raise StepFailure(f"{verb} failed for {len(bad)} of {len(entries)} services: "
                          + "\n".join(parts),
                          retryable=all(e.get("retryable") for e in bad), result=result)
    return result


async def start(params: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Start the service(s) and wait until each unit is active, failed, or out of time."""
    return await _start_like(params, ctx, "start", systemd.start)


async def restart(params: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Restart the service(s) and wait as start does."""
    return await _start_like(params, ctx, "restart", systemd.restart)


async def stop(params: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Stop the service(s); returns when systemd has stopped them. The rollback of start."""
    pairs = resolve(params["service"], ctx)
    if not pairs:
        return _nothing("stop")

    async def one(name: str, unit: str) -> dict[str, Any]:
        ctx.log.info("stop %s (%s)", name, unit)
        await systemd.stop(unit)
        return _entry(name, await systemd.show(unit))

    return {"services": await _each(pairs, one)}


async def status(params: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """The state of the service(s); never fails for a unit that is down."""
    pairs = resolve(params["service"], ctx)
    if not pairs:
        return _nothing("report")

    async def one(name: str, unit: str) -> dict[str, Any]:
        state = await systemd.show(unit)
        entry = _entry(name, state)
        entry["found"] = state.found
        return entry

    entries = await _each(pairs, one)
    return {"services": entries, "active": all(e["state"] == "active" for e in entries)}
