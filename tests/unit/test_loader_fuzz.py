"""Property: whatever a file holds, the loader answers with a Definition or a
DefinitionError — never another exception, never a hang."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestratord.core.errors import DefinitionError
from orchestratord.language.loader import load_text
from orchestratord.skills import discover
from tests.conftest import ECHO, write_skill

SEEDS = [yaml.safe_load(p.read_text())
         for p in sorted((Path(__file__).parents[2] / "workflows").glob("*.yaml"))]
NAMES = ["nixos-deployment", "health-monitoring", "code-review", "parallel-1", "x", "",
         "steps", "a-b", "{{", "__class__", "depends_on", "parallel", "when", "id"]
EXPRESSIONS = ["steps.x.result", "params.p", "steps['code-review'].status == 'ok'",
               "{{ steps.x }}", "1 +", "''.__class__.__mro__", "range(10**9)", "steps.a-b.c",
               "'a' * 10**9", "{% for x in y %}", "true", "steps.project-import.result.path"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=False)
    | st.sampled_from(NAMES + EXPRESSIONS) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(NAMES + ["skill", "action", "params", "retry", "timeout", "rollback"])
        | st.text(max_size=8), inner, max_size=4),
    max_leaves=20)


def _registry(tmp: Path):
    for skill, actions in {"nixos-deployment": ["generate_config"], "health-monitoring": ["check"],
                           "ai-service-management": ["start"], "project-import": ["import_github"],
                           "code-review": ["review_changes"], "webapp-testing": ["run_tests"],
                           "internal-comms": ["status_report"]}.items():
        write_skill(tmp, skill, {a: {"command": ECHO, "params": {"type": "object"}} for a in actions})
    return discover([tmp])


@st.composite
def mutated_seed(draw):
    doc = copy.deepcopy(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 6))):
        node, path = doc, []
        # walk to a random container inside the document
        while isinstance(node, (dict, list)) and node and draw(st.booleans()):
            key = draw(st.sampled_from(list(node) if isinstance(node, dict) else range(len(node))))
            if not isinstance(node[key], (dict, list)):
                break
            node, path = node[key], path + [key]
        if isinstance(node, dict):
            action = draw(st.sampled_from(["set", "delete", "rename"]))
            key = draw(st.sampled_from(list(node) + NAMES[:4]))
            if action == "set" or key not in node:
                node[key] = draw(json_values | st.sampled_from(EXPRESSIONS))
            elif action == "delete":
                del node[key]
            else:
                node[draw(st.sampled_from(NAMES))] = node.pop(key)
        elif isinstance(node, list):
            if node and draw(st.booleans()):
                node.append(copy.deepcopy(draw(st.sampled_from(node))))
            else:
                node.insert(0, draw(json_values))
    return doc


def _load(registry, text: str) -> None:
    try:
        load_text(text, "fuzz.yaml", registry, Path("/nonexistent"))
    except DefinitionError as exc:
        assert exc.problems, "a DefinitionError always carries its problems"
        for problem in exc.problems:
            assert problem.file == "fuzz.yaml" and problem.line >= 1 and problem.column >= 1


FUZZ = settings(max_examples=1500, deadline=5000,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(doc=mutated_seed())
def test_mutated_seed_documents(tmp_path_factory, doc):
    registry = _REGISTRY.get("r") or _REGISTRY.setdefault("r", _registry(tmp_path_factory.mktemp("s")))
    _load(registry, yaml.safe_dump(doc, sort_keys=False))


@FUZZ
@given(text=st.text(max_size=300), cut=st.integers(0, 400))
def test_arbitrary_and_truncated_text(tmp_path_factory, text, cut):
    registry = _REGISTRY.get("r") or _REGISTRY.setdefault("r", _registry(tmp_path_factory.mktemp("s")))
    _load(registry, text)
    seed_text = yaml.safe_dump(SEEDS[cut % len(SEEDS)], sort_keys=False)
    _load(registry, seed_text[:cut] + text[:20] + seed_text[cut:])


@FUZZ
@given(doc=json_values)
def test_generated_documents(tmp_path_factory, doc):
    registry = _REGISTRY.get("r") or _REGISTRY.setdefault("r", _registry(tmp_path_factory.mktemp("s")))
    _load(registry, yaml.safe_dump({"workflow": doc}))


_REGISTRY: dict = {}
