"""ai-service-management: name resolution and failure messages here; starting and stopping
real units under systemd (where systemd is PID 1 here, and always in tests/system)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from orchestratord.core.errors import StepFailure
from orchestratord.engine.context import StepContext, step_logger
from orchestratord.engine.runners import systemctl as systemd
from orchestratord.skills.bundled.ai_service_management import actions as services

SYSTEMD_REASON = systemd.unavailable_reason()
needs_systemd = pytest.mark.skipif(
    SYSTEMD_REASON is not None,
    reason=f"needs systemd as PID 1 ({SYSTEMD_REASON}); tests/system runs these under real systemd")


def context(section: dict[str, Any] | None, state: Path = Path("/tmp")) -> StepContext:
    skills = {"ai-service-management": section} if section is not None else {}
    return StepContext(run_id="r", workflow="w", step_id="ai-service-management",
                       skill="ai-service-management", action="start", attempt=1,
                       idempotency_key="r/ai-service-management", log=step_logger("test"),
                       settings={"state_dir": str(state), "skills": skills})


MAP = {"services": {"model": "model.service", "embeddings": "embed.service"}}


@pytest.mark.parametrize("action", [services.start, services.stop, services.restart,
                                    services.status])
async def test_unknown_name_fails_at_once_listing_known_names(action: Any) -> None:
    with pytest.raises(StepFailure) as caught:
        await action({"service": "modle"}, context(MAP))
    assert not caught.value.retryable
    assert str(caught.value) == ("unknown service 'modle'; known services: embeddings, model "
                                 "(settings skills.ai-service-management.services)")


async def test_unknown_name_with_no_services_configured() -> None:
    with pytest.raises(StepFailure, match="known services: none are configured"):
        await services.start({"service": "model"}, context(None))


@pytest.mark.parametrize("action", [services.start, services.stop, services.status])
async def test_all_with_no_services_succeeds_saying_so(action: Any) -> None:
    result = await action({"service": "all"}, context({"services": {}}))
    assert result["services"] == []
    assert "nothing to" in result["message"]


async def test_bad_settings_name_the_key() -> None:
    with pytest.raises(StepFailure, match=r"skills.ai-service-management.services"):
        await services.start({"service": "all"}, context({"services": ["model.service"]}))
    with pytest.raises(StepFailure, match=r"skills.ai-service-management.start_timeout"):
        await services.start({"service": "all"},
                             context({**MAP, "start_timeout": "soon"}))


@pytest.mark.skipif(SYSTEMD_REASON is None, reason="systemd runs here; this checks the fallback")
async def test_without_systemd_the_failure_says_why() -> None:
    with pytest.raises(StepFailure) as caught:
        await services.start({"service": "model"}, context(MAP))
    assert str(caught.value) == SYSTEMD_REASON
    assert not caught.value.retryable


@needs_systemd
async def test_start_waits_for_active_and_stop_stops() -> None:
    # A transient unit made with systemd-run stands in for a configured service.
    unit = f"aio-test-{uuid.uuid4().hex[:8]}.service"
    await systemd.run_tool("systemd-run", f"--unit={unit}", "--remain-after-exit",
                           "--service-type=oneshot", "true")
    ctx = context({"services": {"t": unit}, "start_timeout": "20s"})
    try:
        result = await services.start({"service": "t"}, ctx)
        assert result["services"][0]["state"] == "active"
        result = await services.stop({"service": "t"}, ctx)
        assert result["services"][0]["state"] == "inactive"
    finally:
        await systemd.run_tool("systemctl", "stop", unit)


@needs_systemd
async def test_start_of_a_failing_unit_reports_result_and_journal(tmp_path: Path) -> None:
    unit = f"aio-fail-{uuid.uuid4().hex[:8]}.service"
    path = Path("/run/systemd/system") / unit  # the runtime unit directory, gone at reboot
    path.write_text("[Service]\nExecStart=/bin/sh -c 'echo about to fail; exit 3'\n")
    await systemd.run_tool("systemctl", "daemon-reload")
    try:
        with pytest.raises(StepFailure) as caught:
            await services.start({"service": "f"}, context({"services": {"f": unit}}))
    finally:
        path.unlink()
        await systemd.run_tool("systemctl", "reset-failed", unit)
        await systemd.run_tool("systemctl", "daemon-reload")
    assert "Result=exit-code" in str(caught.value)
    assert "about to fail" in str(caught.value)
    assert not caught.value.retryable
