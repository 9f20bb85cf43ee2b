"""Running in this process: an engine over the embedded SQLite state file, with the
progress, alerts and workspace housekeeping a run gets from the daemon."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from ..core.errors import ParamsError
from ..core.paths import default_state_file
from ..core.statuses import ExitCode


def parse_params(pairs: list[str]) -> dict[str, Any]:
    import yaml
    params = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ParamsError(f"--param expects KEY=VALUE, got {pair!r}")
        try:
            params[key] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            params[key] = value
    return params


async def with_engine(args: argparse.Namespace, work: Any) -> Any:
    import asyncio
    import signal

    from ..engine.engine import Engine, settle_heap
    from ..observability.alerts import AlertManager
    from ..store import workspaces
    from ..store.sqlite import Store
    from .progress import Progress
    settle_heap()  # the definition is loaded: out of the collector's way while it runs
    settings = embedded_settings()  # before the store opens: a bad file must not leak it
    state = Path(args.state or default_state_file())
    state_dir = state.parent.resolve()
    store = await Store.open(state)
    # Embedded runs keep what skills write (reports, run workspaces) beside the state file.
    engine = Engine(store, settings={"state_dir": str(state_dir), "skills": settings.skills})
    if not getattr(args, "json", False) or args.command in ("run", "resume"):
        engine.listeners.append(Progress())
    alerts = AlertManager(store, settings.alerts)
    engine.listeners.append(alerts)
    task = asyncio.current_task()
    assert task is not None, "called from a coroutine"
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await work(engine)
    finally:
        loop.remove_signal_handler(signal.SIGTERM)
        await alerts.close(grace=30.0)  # a webhook being retried gets its chance
        if settings.workspace_retention is not None:
            try:  # housekeeping: its failure must not hide the run's outcome
                await workspaces.prune(store, state_dir, settings.workspace_retention)
            except Exception as exc:
                logging.getLogger("orchestratord.workspaces").warning(
                    "pruning run workspaces failed: %s", exc)
        await engine.close()
        await store.close()


def embedded_settings() -> Any:
    """Embedded runs use the daemon's settings file when $ORCHESTRATOR_SETTINGS names one
    (skill sections, alert sinks, workspace retention), else the defaults; their state
    stays in the embedded state file. Alerts write the crit record in any case."""
    from ..language.settings import load_settings
    return load_settings(os.environ.get("ORCHESTRATOR_SETTINGS") or None)


def _finish(result: Any, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"run_id": result.run_id, "status": result.status,
                          "outputs": result.outputs, "error": result.error}, indent=2))
    elif result.outputs:
        print(json.dumps(result.outputs, indent=2))
    return ExitCode.of_run(result.status)


def drive(args: argparse.Namespace, work: Any) -> int:
    import asyncio
    try:
        result = asyncio.run(with_engine(args, work))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; the run can be resumed with `orchestratorctl resume RUN`",
              file=sys.stderr)
        return ExitCode.INTERRUPTED
    return _finish(result, args.json)


def definition_of_run(run: Any, skill_paths: list[str]) -> Any:
    from ..language.loader import stored_definition
    from ..language.skill_registry import discover, search_path
    registry = discover(search_path([*skill_paths, Path(run.file).parent / "skills"]))
    return stored_definition(run.definition, run.file, registry)


def store_call(args: argparse.Namespace, fn: Any) -> Any:
    import asyncio

    from ..store.sqlite import Store

    async def go() -> Any:
        store = await Store.open(args.state or default_state_file())
        try:
            return await fn(store)
        finally:
            await store.close()
    return asyncio.run(go())
