"""What a daemon serves from a directory of workflows."""

from __future__ import annotations

from pathlib import Path

from orchestratord.language.catalog import load_catalog

WORKFLOWS = Path(__file__).parents[2] / "workflows"


def test_the_shipped_workflows_load_with_the_skills_beside_them():
    catalog = load_catalog(WORKFLOWS, [])
    assert [str(p) for p in catalog.problems] == []
    assert sorted(catalog.workflows) == ["code-review-pipeline", "deploy-nixos-system",
                                         "host-facts"]
    assert catalog.skills.get("project-import").directory == (WORKFLOWS / "skills" /
                                                              "project-import").resolve()


def test_a_broken_file_is_reported_and_the_others_load(tmp_path):
    (tmp_path / "good.yaml").write_text(
        "workflow: {name: good, steps: [{skill: s, action: a}]}\n"
        "skills: {s: {actions: {a: {command: [\"true\"]}}}}\n")
    (tmp_path / "bad.yaml").write_text("workflow: {name: bad, steps: [{skill: nope, action: a}]}\n")
    catalog = load_catalog(tmp_path, [])
    assert list(catalog.workflows) == ["good"]
    assert [(Path(p.file).name, p.line) for p in catalog.problems] == [("bad.yaml", 1)]
    assert "unknown skill 'nope'" in str(catalog.problems[0])
