"""The DAG of a workflow: step ids, dependency edges, cycles, ancestry.

Ordering semantics: the step list is a sequence. A step without `depends_on` runs after
the item before it; an explicit `depends_on` replaces that implicit edge (`[]` makes a
root). A `parallel:` group is one item whose members run concurrently; members without
their own `depends_on` wait for what the group waits for. Naming a group waits for all
its members; naming a member waits for that member only. A name in `depends_on` is a
step id, a group id, or the skill of exactly one step.
"""

from __future__ import annotations

import graphlib
from dataclasses import dataclass, field
from functools import cached_property

from ..core.errors import Problem
from ..core.suggest import did_you_mean
from .model import ParallelGroup, Step, Workflow
from .source import Document, Path_


@dataclass(frozen=True)
class Node:
    """One step placed in the graph."""

    id: str
    step: Step
    path: Path_            # where the step was written, e.g. ("workflow", "steps", 2)
    deps: tuple[str, ...]  # step ids it waits for (groups expanded to members)
    group: str | None = None

    # A routed step is resolved to its skill and action before the graph that is driven
    # is built (loader.load); only a report's graph may hold one that is not.
    @property
    def skill(self) -> str:
        assert self.step.skill is not None, f"step '{self.id}' is not resolved to a skill"
        return self.step.skill

    @property
    def action(self) -> str:
        assert self.step.action is not None, f"step '{self.id}' is not resolved to an action"
        return self.step.action


@dataclass
class Graph:
    """The steps of a workflow in document order, with their edges."""

    nodes: dict[str, Node]
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)

    @cached_property
    def dependents(self) -> dict[str, tuple[str, ...]]:
        out: dict[str, list[str]] = {n: [] for n in self.nodes}
        for node in self.nodes.values():
            for dep in node.deps:
                out[dep].append(node.id)
        return {k: tuple(v) for k, v in out.items()}

    @cached_property
    def _ancestor_bits(self) -> dict[str, int]:
        # Ancestor sets as int bitsets: linear memory in practice even for a
        # 10,000-step chain, where sets of ids would be quadratic.
        bit = {node_id: 1 << i for i, node_id in enumerate(self.nodes)}
        order = graphlib.TopologicalSorter({n.id: n.deps for n in self.nodes.values()})
        bits: dict[str, int] = {}
        for node_id in order.static_order():
            acc = 0
            for dep in self.nodes[node_id].deps:
                acc |= bits[dep] | bit[dep]
            bits[node_id] = acc
        return bits

    def is_upstream(self, name: str, of: str) -> bool:
        """Whether step or group `name` finishes before step `of` starts, by the edges."""
        bits = self._ancestor_bits[of]
        return all(bits >> self._positions[m] & 1 for m in self.groups.get(name, (name,)))

    @cached_property
    def _positions(self) -> dict[str, int]:
        return {node_id: i for i, node_id in enumerate(self.nodes)}


def build(workflow: Workflow, doc: Document) -> tuple[Graph, list[Problem]]:
    """Name the steps, resolve dependencies and find cycles; never raises on bad input."""
    problems: list[Problem] = []
    base: Path_ = ("workflow", "steps")
    placed: list[tuple[str, Step, Path_, str | None, list[str] | None]] = []
    groups: dict[str, tuple[str, ...]] = {}
    first_use: dict[str, Path_] = {}

    def claim(name: str, path: Path_, explicit: bool) -> None:
        where = path + (("id",) if explicit else ("skill",))
        if name in first_use:
            line = doc.locate(first_use[name])[0]
            hint = "" if explicit else "; give one of them an `id:`"
            problems.append(doc.problem(where, f"duplicate step id '{name}' (also used on "
                                                f"line {line}){hint}"))
        else:
            first_use[name] = where

    implicit: list[str] = []  # ids of the item before: the default dependency
    anonymous_groups = 0  # parallel-N names the N-th group without an id (README)
    for i, item in enumerate(workflow.steps):
        path = base + (i,)
        if isinstance(item, ParallelGroup):
            if item.id is None:
                anonymous_groups += 1
            gid = item.id or f"parallel-{anonymous_groups}"
            claim(gid, path, item.id is not None)
            members = []
            for j, member in enumerate(item.parallel):
                mpath = path + ("parallel", j)
                mid = _step_id(member)
                claim(mid, mpath, member.id is not None)
                own = member.depends_on
                names = own if own is not None else item.depends_on
                placed.append((mid, member, mpath, gid,
                               names if names is not None else list(implicit)))
                members.append(mid)
            groups[gid] = tuple(members)
            implicit = members
        else:
            sid = _step_id(item)
            claim(sid, path, item.id is not None)
            placed.append((sid, item, path, None,
                           item.depends_on if item.depends_on is not None else list(implicit)))
            implicit = [sid]

    ids = {sid for sid, *_ in placed}
    by_skill: dict[str, list[str]] = {}
    for sid, step, *_ in placed:
        if step.skill is not None:
            by_skill.setdefault(step.skill, []).append(sid)

    nodes: dict[str, Node] = {}
    for sid, step, path, group, names in placed:
        if sid in nodes:
            continue  # a duplicate id, already reported
        deps: list[str] = []
        for k, name in enumerate(names or []):
            resolved = _resolve(name, ids, groups, by_skill)
            if isinstance(resolved, str):
                where = _deps_path(path, step, group, k)
                problems.append(doc.problem(where, resolved))
                continue
            deps.extend(d for d in resolved if d not in deps)
        if sid in deps:
            problems.append(doc.problem(path + ("depends_on",), f"step '{sid}' depends on itself"))
            deps.remove(sid)
        nodes[sid] = Node(sid, step, path, tuple(deps), group)
    graph = Graph(nodes, groups)
    cycle = _find_cycle(graph)
    if cycle:
        start = nodes[cycle[0]]
        problems.append(doc.problem(start.path + ("depends_on",),
                                    "dependency cycle: " + " -> ".join(cycle)
                                    + " (each step depends on the next)"))
    return graph, problems


def _deps_path(path: Path_, step: Step, gid: str | None, k: int) -> Path_:
    if step.depends_on is not None or gid is None:
        return path + ("depends_on", k)
    return path[:-2] + ("depends_on", k)  # inherited from the group


def _step_id(step: Step) -> str:
    """Its own id, else its skill's name; a stored routed step not pinned to a skill (a
    report's graph only) goes by its route."""
    return step.id or step.skill or str(step.routed)


def _resolve(name: str, ids: set[str], groups: dict[str, tuple[str, ...]],
             by_skill: dict[str, list[str]]) -> tuple[str, ...] | str:
    """Step ids that `name` stands for, or the reason it stands for none."""
    if name in groups:
        return groups[name]
    if name in ids:
        return (name,)
    if name in by_skill:
        if len(by_skill[name]) == 1:
            return (by_skill[name][0],)
        return (f"'{name}' is ambiguous: steps {', '.join(map(repr, by_skill[name]))} all use "
                f"skill '{name}'; name one of them by its id")
    known = sorted(ids | set(groups) | set(by_skill))
    return f"no step or skill named '{name}'" + did_you_mean(name, known)


def _find_cycle(graph: Graph) -> list[str] | None:
    sorter = graphlib.TopologicalSorter({n.id: n.deps for n in graph.nodes.values()})
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        # graphlib lists each node before the one that depends on it; reversed, each
        # step is followed by what it depends on, as a person reads depends_on.
        return list(reversed(exc.args[1]))
    return None
