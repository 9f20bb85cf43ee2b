#!/usr/bin/env python3
"""project-import import_github: clone a git repository into the run's workspace.

Params (JSON on stdin): repo (a URL, an absolute local path, or owner/repo meaning
https://github.com/owner/repo), ref (branch, tag or commit; default: the remote's default
branch), workspace (where the checkout goes; default $ORCHESTRATOR_WORKSPACE, the run's
workspace; a relative path is taken inside it).

Idempotent: the checkout is made with init + fetch + checkout, so a retry of the same
step (same workspace) fetches into what an earlier attempt left instead of failing on a
non-empty directory. It refuses to touch a directory it did not create.

Exit status: 0 with the result as JSON on stdout; 75 when the remote could not be
reached (worth retrying); 1 for anything a retry would not fix (not found, bad ref).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, NoReturn

EX_TEMPFAIL = 75
MARKER = "orchestrator-import.json"   # in .git/: this directory is ours to update
OWNER_REPO = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,38}/[A-Za-z0-9._-]{1,100}$")
COMMIT_ID = re.compile(r"^[0-9a-fA-F]{4,64}$")
SCP_LIKE = re.compile(r"^[\w.-]+@[\w.-]+:")   # git@github.com:owner/repo.git

# What git says, lower-cased, and what it means for a retry.
NOT_FOUND = ("repository not found", "does not appear to be a git repository",
             "does not exist", "returned error: 404", "could not read username",
             "terminal prompts disabled", "authentication failed")
NETWORK = ("could not resolve host", "temporary failure in name resolution",
           "connection timed out", "operation timed out", "connection refused",
           "failed to connect", "network is unreachable", "no route to host", "early eof",
           "rpc failed", "remote end hung up", "returned error: 5", "gnutls", "ssl_",
           "tls connection")

# Never wait for a password: a daemon has no terminal, and a prompt would hang the step.
GIT_ENV = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
GIT_ENV.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")


def fail(message: str, *, retryable: bool = False) -> NoReturn:
    """The last stderr line becomes the step's error message."""
    print(message, file=sys.stderr)
    sys.exit(EX_TEMPFAIL if retryable else 1)


def read_params() -> dict[str, Any]:
    # Their types and ranges are checked before this runs, against actions.yaml's schema.
    text = sys.stdin.read().strip()
    try:
        params = json.loads(text) if text else {}
    except ValueError as exc:
        fail(f"params: not JSON: {exc}")
    if not isinstance(params, dict):
        fail("params: expected an object")
    return params


def source_of(repo: str) -> str:
    """The URL or path git fetches from."""
    repo = repo.strip()
    if "://" in repo or SCP_LIKE.match(repo):
        return repo
    if repo.startswith(("/", "~")):
        path = Path(repo).expanduser()
        if not path.exists():
            fail(f"repository {repo} not found: no such directory")
        return str(path)
    if OWNER_REPO.match(repo):
        return f"https://github.com/{repo}"
    fail(f"params.repo: {repo!r} is not a URL, an absolute local path or owner/repo")


def workspace_of(value: str | None) -> Path:
    run_workspace = os.environ.get("ORCHESTRATOR_WORKSPACE")
    if value:
        path = Path(value).expanduser()
        if path.is_absolute():
            return path
        if not run_workspace:
            fail("params.workspace: a relative path is taken inside the run's workspace, "
                 "but $ORCHESTRATOR_WORKSPACE is not set; give an absolute path")
        return Path(run_workspace) / path
    if not run_workspace:
        fail("params.workspace: not given, and $ORCHESTRATOR_WORKSPACE (set for steps the "
             "orchestrator runs) is not set")
    return Path(run_workspace)


def git(args: list[str], cwd: Path, *, source: str = "", check: bool = True) -> str:
    """Run git; on failure, exit with what its stderr says it means for a retry."""
    proc = subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL)
    if proc.returncode == 0 or not check:
        return proc.stdout if proc.returncode == 0 else ""
    said = " ".join(proc.stderr.split()) or f"git {args[0]} exited with status {proc.returncode}"
    lowered = said.lower()
    if source and any(s in lowered for s in NOT_FOUND):
        fail(f"repository {source} not found (or private and no credentials given): {said}")
    if any(s in lowered for s in NETWORK):
        fail(f"cannot reach {source or 'the remote'} (will retry): {said}", retryable=True)
    fail(f"git {' '.join(args[:2])} failed: {said}")


def prepare(workspace: Path, source: str) -> bool:
    """An empty repository with origin = source, or the one an earlier attempt made.

    Returns whether it existed already (this is a retry or a re-import).
    """
    marker = workspace / ".git" / MARKER
    if marker.exists():
        recorded = json.loads(marker.read_text()).get("source")
        if recorded != source:
            fail(f"workspace {workspace} holds an import of {recorded}, not {source}; "
                 "give another workspace")
        return True
    if (workspace / ".git").exists():
        fail(f"workspace {workspace} is a git repository that project-import did not create; "
             "refusing to modify it")
    if workspace.exists() and any(workspace.iterdir()):
        fail(f"workspace {workspace} exists and is not empty; give an empty or new directory")
    workspace.mkdir(parents=True, exist_ok=True)
    git(["init", "-q"], workspace)
    git(["remote", "add", "origin", source], workspace)
    marker.write_text(json.dumps({"source": source}) + "\n")
    return False


def default_branch(workspace: Path, source: str) -> str:
    """The branch the remote's HEAD points at; also the first contact with the remote."""
    out = git(["ls-remote", "--symref", "origin", "HEAD"], workspace, source=source)
    match = re.search(r"^ref: refs/heads/(\S+)\s+HEAD$", out, re.M)
    if not match:
        fail(f"repository {source} has no default branch (is it empty?); give params.ref")
    return match.group(1)


def checkout(workspace: Path, ref: str, source: str) -> str | None:
    """Check out ref (a branch, tag or commit); returns the branch, None if detached."""
    def exists(name: str) -> bool:
        return bool(git(["rev-parse", "-q", "--verify", f"{name}^{{commit}}"], workspace,
                        check=False))
    if exists(f"refs/remotes/origin/{ref}"):
        # -B resets the local branch to the fetched one: the same result on every retry.
        git(["checkout", "-q", "-f", "-B", ref, f"refs/remotes/origin/{ref}"], workspace)
        return ref
    # Only a commit id is looked up as is: "HEAD~1" would mean the previous checkout.
    target = (f"refs/tags/{ref}" if exists(f"refs/tags/{ref}") else
              ref if COMMIT_ID.match(ref) and exists(ref) else None)
    if target is None:
        # Not advertised as a branch or tag (a commit, refs/pull/N/head): ask for it.
        fetched = subprocess.run(["git", "fetch", "-q", "origin", ref], cwd=workspace,
                                 env=GIT_ENV, capture_output=True, text=True,
                                 stdin=subprocess.DEVNULL)
        if fetched.returncode != 0:
            said = " ".join(fetched.stderr.split()).lower()
            if any(s in said for s in NETWORK):
                fail(f"cannot reach {source} (will retry): {said}", retryable=True)
            fail(f"params.ref: {ref!r} is not a branch, tag or commit of {source}")
        target = "FETCH_HEAD"
    git(["checkout", "-q", "-f", "--detach", f"{target}^{{commit}}"], workspace)
    return None


def main() -> None:
    params = read_params()
    source = source_of(params["repo"])
    workspace = workspace_of(params.get("workspace"))
    existed = prepare(workspace, source)
    print(f"{'updating' if existed else 'importing'} {source} in {workspace}", file=sys.stderr)
    ref = params.get("ref") or default_branch(workspace, source)
    git(["fetch", "-q", "--prune", "--tags", "--force", "origin"], workspace, source=source)
    branch = checkout(workspace, ref, source)
    git(["clean", "-q", "-f", "-f", "-d"], workspace)   # what an earlier attempt left
    commit = git(["rev-parse", "HEAD"], workspace).strip()
    subject = git(["log", "-1", "--format=%s", "HEAD"], workspace).strip()
    print(f"checked out {commit[:12]} ({branch or ref}): {subject}", file=sys.stderr)
    # The telling keys first: reports show a result's first fields.
    json.dump({"commit": commit, "branch": branch, "ref": ref, "source": source,
               "subject": subject, "repo": params["repo"], "path": str(workspace),
               "updated": existed}, sys.stdout)


if __name__ == "__main__":
    main()
