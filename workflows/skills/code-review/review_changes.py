#!/usr/bin/env python3
"""code-review review_changes: what changed between two commits, and what linters say.

Params (JSON on stdin): path (a git work tree; default $ORCHESTRATOR_WORKSPACE, where
project-import puts the run's checkout), base (default: the first parent of head, or
the empty tree for a root commit), head (default HEAD), fail_on_findings (default false).

Linters run on the changed files as they are at head (read from git, not from the work
tree, so the review is of the commit even if the tree was touched): pyflakes for Python
where it is installed for this interpreter, else a compile check; `bash -n` for shell.

Exit status: 0 with the result as JSON on stdout; 1 when the repository or a revision is
unusable, or when fail_on_findings is set and there are findings.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, NoReturn

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"   # git's tree with nothing in it
MAX_DIFF = 64 * 1024      # the diff is kept in the state database: bounded
MAX_FINDINGS = 500
PYFLAKES_LINE = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?:(?P<col>\d+):?)?\s+(?P<message>.+)$")
BASH_LINE = re.compile(r"^(?P<file>.+?): line (?P<line>\d+): (?P<message>.+)$")
SHELLS = re.compile(r"^#!\s*(?:/usr)?/bin/(?:env\s+)?(?:ba)?sh\b")


def fail(message: str) -> NoReturn:
    print(message, file=sys.stderr)
    sys.exit(1)


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


def git(args: list[str], cwd: Path, *, what: str = "") -> str:
    # A diff may hold any bytes: decode leniently rather than crash on a Latin-1 file.
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, encoding="utf-8",
                          errors="replace", stdin=subprocess.DEVNULL,
                          env={**os.environ, "LC_ALL": "C"})
    if proc.returncode != 0:
        said = " ".join(proc.stderr.split())
        fail(f"{what or 'git ' + args[0]}" + (f": {said}" if said else ""))
    return proc.stdout


def repository(value: str | None) -> Path:
    if value:
        path = Path(value).expanduser()
    elif os.environ.get("ORCHESTRATOR_WORKSPACE"):
        path = Path(os.environ["ORCHESTRATOR_WORKSPACE"])
        if not path.exists():
            fail(f"params.path: not given, and the run's workspace {path} does not exist; "
                 "import a repository first (project-import import_github) or give path")
    else:
        fail("params.path: not given, and $ORCHESTRATOR_WORKSPACE (set for steps the "
             "orchestrator runs) is not set")
    if not path.is_dir():
        fail(f"params.path: {path} is not a directory")
    proc = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=path, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        fail(f"params.path: {path} is not a git repository")
    return Path(proc.stdout.strip())


def revisions(repo: Path, base: str | None, head: str) -> tuple[str, str]:
    head_id = git(["rev-parse", "--verify", "-q", f"{head}^{{commit}}"], repo,
                  what=f"params.head: {head!r} is not a commit").strip()
    if base:
        return git(["rev-parse", "--verify", "-q", f"{base}^{{commit}}"], repo,
                   what=f"params.base: {base!r} is not a commit").strip(), head_id
    parents = git(["rev-list", "--parents", "-n", "1", head_id], repo).split()[1:]
    return (parents[0] if parents else EMPTY_TREE), head_id


def changed_files(repo: Path, base: str, head: str) -> list[dict[str, Any]]:
    """One entry per changed file: path, status (A/M/D/R...), insertions, deletions."""
    status: dict[str, str] = {}
    fields = git(["diff", "--name-status", "-z", "--find-renames", base, head], repo).split("\0")
    i = 0
    while i < len(fields) - 1:
        code = fields[i]
        if code[:1] in "RC":        # renamed or copied: old path, new path
            status[fields[i + 2]] = code[0]
            i += 3
        else:
            status[fields[i + 1]] = code[0]
            i += 2
    files = []
    numstat = git(["diff", "--numstat", "-z", "--find-renames", base, head], repo).split("\0")
    i = 0
    while i < len(numstat) - 1:
        added, removed, path = numstat[i].split("\t", 2)
        if path == "":                # a rename: the two paths follow
            path, i = numstat[i + 2], i + 3
        else:
            i += 1
        binary = added == "-"
        files.append({"path": path, "status": status.get(path, "M"), "binary": binary,
                      "insertions": 0 if binary else int(added),
                      "deletions": 0 if binary else int(removed)})
    return files


def kind_of(path: str, content: bytes) -> str | None:
    if path.endswith((".py", ".pyi")):
        return "python"
    if path.endswith((".sh", ".bash")):
        return "shell"
    first = content.split(b"\n", 1)[0].decode("utf-8", "replace")
    if first.startswith("#!") and "python" in first:
        return "python"
    if SHELLS.match(first):
        return "shell"
    return None


def lint(repo: Path, head: str, files: list[dict[str, Any]]) -> tuple[list[dict], dict]:
    """Findings in the changed files at head, and which linter checked each language."""
    has_pyflakes = importlib.util.find_spec("pyflakes") is not None
    linters = {"python": "pyflakes" if has_pyflakes else "py_compile", "shell": "bash -n"}
    findings: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="code-review-") as tmp:
        root = Path(tmp)
        by_kind: dict[str, list[str]] = {"python": [], "shell": []}
        for entry in files:
            if entry["status"] == "D" or entry["binary"]:
                continue
            content = subprocess.run(["git", "show", f"{head}:{entry['path']}"], cwd=repo,
                                     capture_output=True, stdin=subprocess.DEVNULL).stdout
            kind = kind_of(entry["path"], content)
            if kind is None:
                continue
            target = root / entry["path"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)
            by_kind[kind].append(entry["path"])
        if by_kind["python"]:
            findings += (pyflakes(root, by_kind["python"]) if has_pyflakes
                         else compile_check(root, by_kind["python"]))
        for path in by_kind["shell"]:
            findings += bash_check(root, path)
    return findings, linters


def pyflakes(root: Path, paths: list[str]) -> list[dict[str, Any]]:
    # Relative paths from root: pyflakes names files as given, so findings name repo paths.
    proc = subprocess.run([sys.executable, "-m", "pyflakes", *paths], cwd=root,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    out = []
    for line in (proc.stdout + proc.stderr).splitlines():
        match = PYFLAKES_LINE.match(line)
        if match and match["file"] in paths:
            out.append({"file": match["file"], "line": int(match["line"]),
                        "message": match["message"].strip(), "linter": "pyflakes"})
    return out


def compile_check(root: Path, paths: list[str]) -> list[dict[str, Any]]:
    out = []
    for path in paths:
        try:
            compile((root / path).read_bytes(), path, "exec", dont_inherit=True)
        except SyntaxError as exc:
            out.append({"file": path, "line": exc.lineno or 1, "message": exc.msg,
                        "linter": "py_compile"})
        except ValueError as exc:     # null bytes and the like
            out.append({"file": path, "line": 1, "message": str(exc), "linter": "py_compile"})
    return out


def bash_check(root: Path, path: str) -> list[dict[str, Any]]:
    proc = subprocess.run(["bash", "-n", path], cwd=root, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    out = []
    for line in proc.stderr.splitlines():
        match = BASH_LINE.match(line)
        if not match or match["file"] != path:
            continue
        message, line_no = match["message"].strip(), int(match["line"])
        if out and out[-1]["line"] == line_no and message.startswith("`"):
            out[-1]["message"] += f" in {message}"   # bash echoes the offending line
            continue
        out.append({"file": path, "line": line_no, "message": message, "linter": "bash -n"})
    return out


def count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


def main() -> None:
    params = read_params()
    repo = repository(params.get("path"))
    base, head = revisions(repo, params.get("base"), params.get("head") or "HEAD")
    files = changed_files(repo, base, head)
    findings, linters = lint(repo, head, files)
    for f in findings:
        print(f"{f['file']}:{f['line']}: {f['message']} ({f['linter']})", file=sys.stderr)
    diff = git(["diff", "--find-renames", base, head], repo)
    insertions = sum(f["insertions"] for f in files)
    deletions = sum(f["deletions"] for f in files)
    summary = (f"{count(len(files), 'file')} changed, {count(insertions, 'insertion')}(+), "
               f"{count(deletions, 'deletion')}(-); {count(len(findings), 'finding')}")
    print(f"{base[:12]}..{head[:12]}: {summary}", file=sys.stderr)
    if params.get("fail_on_findings") and findings:
        fail(f"review found problems: {summary}")
    # The telling keys first: reports show a result's first fields.
    json.dump({"summary": summary, "files_changed": len(files), "insertions": insertions,
               "deletions": deletions, "findings": findings[:MAX_FINDINGS],
               "findings_truncated": len(findings) > MAX_FINDINGS,
               "base": base if base != EMPTY_TREE else None, "head": head, "files": files,
               "linters": linters, "path": str(repo), "diff": diff[:MAX_DIFF],
               "diff_truncated": len(diff) > MAX_DIFF}, sys.stdout)


if __name__ == "__main__":
    main()
