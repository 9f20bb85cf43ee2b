"""Run ids and their prefixes, as every command and the MCP server look runs up."""

from __future__ import annotations

import pytest

from orchestratord.core.errors import RunNotFound


async def test_a_prefix_is_text_never_a_pattern(store):
    """Regression: the prefix went into LIKE, so '%' or '_' named the only run there was."""
    run_id = await store.create_run("wf", {}, "wf.yaml", {}, [("s", "k", "a")])
    assert (await store.get_run(run_id[:4])).id == run_id
    for hostile in ("%", "_", "%%", run_id[:2] + "%", "_" * len(run_id), ""):
        with pytest.raises(RunNotFound, match="no run"):
            await store.get_run(hostile)
