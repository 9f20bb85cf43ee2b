"""YAML and JSON documents that remember where each value was written.

Every error about a definition must name file, line and column; pydantic and the
semantic checks know only a path such as ("workflow", "steps", 2, "depends_on"), so the
document keeps a map from paths to positions. Duplicate keys, which PyYAML silently
overwrites, are problems here.
"""

from __future__ import annotations

import datetime
import functools
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic
import yaml

from ..core.errors import Problem
from ..core.suggest import did_you_mean

Path_ = tuple[str | int, ...]
# Definition files are written by people: the examples have under 100 values and 10
# levels. The limits are checked while reading and composing, so a hostile file costs
# at most about two seconds and 60 MB, however large or deep it is
# (test_hostile_files.py; 200,000 values cost 4.2 s of CPU and 120 MB).
MAX_BYTES = 1024 * 1024
# Composed nodes, and values after alias expansion ("billion laughs"): room for a
# workflow of 10,000 steps (7 values each at least), as long as the engine runs linearly.
MAX_NODES = 100_000
MAX_DEPTH = 64      # far below Python's recursion limit, which deeper input would hit


class Unreadable(Exception):
    """A definition file that is not read: not a regular file, too large, not UTF-8."""


def read_text(path: str | Path) -> str:
    """The UTF-8 text of a regular file of at most MAX_BYTES; else Unreadable says why."""
    try:
        raw = read_regular(path, MAX_BYTES + 1)  # the size may lie (/proc) or grow meanwhile
    except OSError as exc:
        raise Unreadable(f"cannot read: {exc.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise Unreadable(f"file is larger than {MAX_BYTES} bytes; refusing to read it")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Unreadable(f"not UTF-8 text: {exc.reason}") from None


def read_regular(path: str | Path, limit: int) -> bytes:
    """At most limit bytes of path if it is a regular file, else Unreadable; OSError as is.

    The file is opened without blocking and checked on the open descriptor, so a FIFO,
    a device (/dev/zero) or a directory, also behind a symlink or swapped in after a
    check by name, is refused at once instead of hanging or filling memory.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise Unreadable(f"is {_file_kind(mode)}, not a regular file; refusing to read it")
    with open(fd, "rb") as file:
        return file.read(limit)


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


class TooLarge(yaml.MarkedYAMLError):
    """A document past MAX_NODES or MAX_DEPTH, at the node where the limit was hit."""


class _Loader(yaml.SafeLoader):
    """The pure-Python safe loader (its messages are the same on every machine) that
    counts nodes and depth as it composes, before building anything larger."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._nodes = self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        mark = self.peek_event().start_mark
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise TooLarge(problem=f"more than {MAX_NODES} values; refusing", problem_mark=mark)
        if self._depth >= MAX_DEPTH:
            raise TooLarge(problem=f"nested deeper than {MAX_DEPTH} levels; refusing",
                           problem_mark=mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


@dataclass
class Document:
    """Parsed data plus the position of every value and key, 1-based."""

    file: str
    data: Any = None
    problems: list[Problem] = field(default_factory=list)
    values: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    too_large: bool = False  # past a limit of size or depth: nothing else is worth saying

    def locate(self, path: Path_, *, key: bool = False) -> tuple[int, int]:
        """Position of the value (or key) at path, else of its nearest written parent."""
        if key and path in self.keys:
            return self.keys[path]
        for end in range(len(path), -1, -1):
            if path[:end] in self.values:
                return self.values[path[:end]]
        return (1, 1)

    def problem(self, path: Path_, message: str, *, key: bool = False,
                shown: str | None = None) -> Problem:
        """A Problem at path; `shown` overrides the printed field path."""
        line, column = self.locate(path, key=key)
        return Problem(self.file, line, column, format_path(path) if shown is None else shown,
                       message)


    def validate(self, model: type[pydantic.BaseModel], data: Any = None, base: Path_ = (),
                 tags: frozenset[str] = frozenset(),
                 context: dict[str, Any] | None = None) -> tuple[Any, list[Problem]]:
        """Check data (default: the whole document) against a model.

        Returns the model instance, or None and every problem pydantic found, each
        located and worded for a person. `context` reaches the model's validators.
        """
        try:
            return model.model_validate(self.data if data is None else data,
                                        context=context), []
        except pydantic.ValidationError as exc:
            return None, [self._problem_of(error, model, base, tags) for error in exc.errors()]

    def _problem_of(self, error: Any, model: type[pydantic.BaseModel], base: Path_,
                    tags: frozenset[str]) -> Problem:
        path = base + self._data_path(error["loc"], base, tags)
        last = path[-1] if path else ""
        kind, value = error["type"], error.get("input")
        if kind == "extra_forbidden":
            return self.problem(path, f"unknown key '{last}'"
                                + did_you_mean(str(last), _field_names(model)), key=True)
        if kind == "missing":
            return self.problem(path[:-1], f"missing required key '{last}'",
                                shown=format_path(path))
        message = error["msg"].removeprefix("Value error, ")
        message = message.replace("Input should be", "must be").replace("Input", "value")
        message = message[:1].lower() + message[1:]
        if kind != "value_error" and not isinstance(value, (dict, list)):
            message += f" (got {value!r})"
        return self.problem(path, message)

    def _data_path(self, loc: tuple[Any, ...], base: Path_, tags: frozenset[str]) -> Path_:
        """pydantic's error location without the tags it adds for unions."""
        out: list[Any] = []
        node = self._at(base)
        for part in loc:
            if (isinstance(node, dict) and part in node) or (
                    isinstance(node, list) and isinstance(part, int) and part < len(node)):
                node = node[part]
            elif part in tags and out and isinstance(out[-1], int):
                continue  # a union tag such as "step" or "parallel", not a key
            else:
                node = None
            out.append(part)
        return tuple(out)

    def _at(self, path: Path_) -> Any:
        node = self.data
        for part in path:
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                return None
        return node


@functools.cache
def _field_names(model: type[pydantic.BaseModel]) -> list[str]:
    """Every key any part of the model accepts, for "did you mean" hints."""
    schema = model.model_json_schema()
    names = set(schema.get("properties", {}))
    for sub in schema.get("$defs", {}).values():
        names.update(sub.get("properties", {}))
    return sorted(names)


def format_path(path: Path_) -> str:
    """("workflow", "steps", 2, "depends_on") -> "steps[2].depends_on"."""
    out = ""
    for part in path[1:] if path[:1] == ("workflow",) else path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def load_file(path: str | Path) -> Document:
    """Read and parse a definition file; problems are collected, never raised."""
    shown = str(path)
    try:
        text = read_text(path)
    except Unreadable as exc:
        return Document(shown, problems=[Problem(shown, 1, 1, "", str(exc))])
    return parse_text(text, shown, json_only=shown.endswith(".json"))


def parse_text(text: str, file: str, *, json_only: bool = False) -> Document:
    """Parse YAML (or JSON, a subset) text into a Document with positions."""
    doc = Document(file)
    if json_only:
        try:
            data = json.loads(text, object_pairs_hook=_no_duplicate_pairs)
        except RecursionError:
            data = None  # too deep: the YAML walk below says where
        except ValueError as exc:
            line, col = getattr(exc, "lineno", 1), getattr(exc, "colno", 1)
            doc.problems.append(Problem(file, line, col, "",
                                        f"JSON syntax: {getattr(exc, 'msg', exc)}"))
            return doc
        # JSON is YAML too, and the YAML walk knows positions and enforces the limits;
        # rare JSON that PyYAML cannot read (tabs in odd places) keeps its data without
        # positions, unless it is too large.
        located = parse_text(text, file)
        if not located.problems or located.too_large or data is None:
            return located
        return Document(file, data)
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - text.rfind("\n", 0, exc.position)
        doc.problems.append(Problem(file, line, column, "", f"YAML: {exc.reason} "
                                    f"(character {exc.character!r} is not allowed)"))
        return doc
    try:
        node = loader.get_single_node()
        if node is not None:
            doc.data = _Walker(loader, doc).walk(node, ())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        doc.too_large = isinstance(exc, TooLarge)
        doc.problems.append(Problem(file, line, col, "", what if doc.too_large
                                    else f"YAML syntax: {what}"))
    except (yaml.YAMLError, ValueError) as exc:
        doc.problems.append(Problem(file, 1, 1, "", f"YAML: {exc}"))
    finally:
        loader.dispose()
    return doc


def _no_duplicate_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"duplicate key {key!r}")
        seen[key] = value
    return seen


class _Walker:
    """Builds plain data from composed YAML nodes, recording positions on the way.

    Aliases make the data larger and deeper than the composed document, so the limits
    are checked again here, per value built.
    """

    MERGE = "tag:yaml.org,2002:merge"

    def __init__(self, loader: Any, doc: Document):
        self.loader, self.doc, self.count = loader, doc, 0
        self.stack: set[int] = set()

    def walk(self, node: yaml.Node, path: Path_) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise TooLarge(problem=f"more than {MAX_NODES} values (aliases expanded); refusing",
                           problem_mark=node.start_mark)
        if len(path) > MAX_DEPTH:
            raise TooLarge(problem=f"nested deeper than {MAX_DEPTH} levels (aliases expanded); "
                           "refusing", problem_mark=node.start_mark)
        self.doc.values[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if id(node) in self.stack:
            raise ValueError(f"recursive alias at line {node.start_mark.line + 1}")
        if isinstance(node, yaml.ScalarNode):
            value = self.loader.construct_object(node, deep=True)
            # Dates and binary are not JSON: keep what was written.
            return node.value if isinstance(value, (datetime.date, bytes)) else value
        self.stack.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.walk(item, path + (i,)) for i, item in enumerate(node.value)]
            assert isinstance(node, yaml.MappingNode), "the composer makes only three kinds"
            return self._mapping(node, path)
        finally:
            self.stack.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        merged: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                mark = key_node.start_mark
                raise yaml.MarkedYAMLError(problem="a mapping key must be a plain value",
                                           problem_mark=mark)
            if key_node.tag == self.MERGE:
                self._merge(value_node, path, merged)
                continue
            key = self.loader.construct_object(key_node)
            key = key if isinstance(key, (str, int)) and not isinstance(key, bool) else str(key)
            here = path + (key,)
            self.doc.keys[here] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if key in out:
                self.doc.problems.append(self.doc.problem(here, f"duplicate key {key!r}", key=True))
            out[key] = self.walk(value_node, here)
        return {**merged, **out}

    def _merge(self, value: yaml.Node, path: Path_, merged: dict[Any, Any]) -> None:
        """`<<: *a` or `<<: [*a, *b]`: keys of the earlier mapping win, written keys over all.

        Done here rather than by PyYAML's flatten_mapping, which copies merged mappings
        into each other before anything is counted (exponential with nested merges).
        """
        own = self.doc.values[path]
        sources = value.value if isinstance(value, yaml.SequenceNode) else [value]
        for source in sources:
            data = self.walk(source, path)
            if not isinstance(data, dict):
                raise yaml.MarkedYAMLError(problem="a merge key '<<' takes a mapping or a list "
                                           "of mappings", problem_mark=source.start_mark)
            for key, item in data.items():
                merged.setdefault(key, item)
        self.doc.values[path] = own  # the walk above recorded the source's position here
