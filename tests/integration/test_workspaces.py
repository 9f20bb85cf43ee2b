"""Run workspaces are removed a while after their run ended, and only then."""

from __future__ import annotations

import os
import time

from orchestratord.store.workspaces import prune, workspace_dir

DAY = 86400.0


async def make_run(store, tmp_path, status: str | None) -> str:
    """A run with a workspace holding a file; ended with status (None: still running)."""
    run_id = await store.create_run("wf", {}, "wf.yaml", {}, [("s", "k", "a")])
    await store.set_run_status(run_id, "running", "run_started")
    if status is not None:
        await store.set_run_status(run_id, status, f"run_{status}")
    workspace = workspace_dir(tmp_path, run_id)
    (workspace / "clone").mkdir(parents=True)
    (workspace / "clone" / "file").write_text("x")
    return run_id


async def test_workspaces_of_runs_ended_before_the_retention_go(tmp_path, store):
    done = await make_run(store, tmp_path, "succeeded")
    failed = await make_run(store, tmp_path, "failed")
    running = await make_run(store, tmp_path, None)
    now = time.time()

    assert await prune(store, tmp_path, retention=DAY, now=now) == []  # all ended just now

    later = now + DAY + 1
    removed = await prune(store, tmp_path, retention=DAY, now=later)
    assert sorted(removed) == sorted([done, failed])
    assert not workspace_dir(tmp_path, done).exists()
    assert not workspace_dir(tmp_path, failed).exists()
    # A run still going keeps its workspace however old.
    assert (workspace_dir(tmp_path, running) / "clone" / "file").read_text() == "x"


async def test_a_workspace_without_a_run_goes_by_its_age(tmp_path, store):
    orphan = workspace_dir(tmp_path, "0123456789ab")
    orphan.mkdir(parents=True)
    stamp = time.time() - 2 * DAY
    os.utime(orphan, (stamp, stamp))
    young = workspace_dir(tmp_path, "ba9876543210")
    young.mkdir(parents=True)

    assert await prune(store, tmp_path, retention=DAY) == ["0123456789ab"]
    assert not orphan.exists() and young.exists()


async def test_nothing_to_prune_without_a_workspaces_directory(tmp_path, store):
    assert await prune(store, tmp_path / "nowhere", retention=DAY) == []
