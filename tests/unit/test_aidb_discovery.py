"""AIDB records as instruction skills: names, descriptions, shadowing, routing."""

from __future__ import annotations

from orchestratord.integrations.aidb.discovery import join, to_skill
from orchestratord.language.skill_registry import Registry, Skill, discover, search_path
from orchestratord.language.skill_routing import router_of
from tests.aidb_fake import skill_record

ORIGIN = "aidb:http://127.0.0.1:8002"


def test_descriptions_fall_back_from_empty_and_placeholder_ones():
    body = "---\nname: a\ndescription: TBD\n---\n\n# A\n\nKeeps the GPU fans quiet.\n\nMore.\n"
    assert to_skill(skill_record("a", description="", content=body), ORIGIN).description == \
        "Keeps the GPU fans quiet."
    assert to_skill(skill_record("b", description=" todo. "), ORIGIN).description == "Do the thing."
    front = "---\nname: c\ndescription: Real words here\n---\n"
    assert to_skill(skill_record("c", description="N/A", content=front), ORIGIN).description == \
        "Real words here"
    assert to_skill(skill_record("d", description="-", content=""), ORIGIN).description == \
        "(AIDB gives no description)"


def test_a_local_skill_wins_and_unusable_slugs_are_left_out():
    local = Registry()
    local.add(Skill("health-monitoring", "local", actions={"check": object()}))
    joined = join(local, [skill_record("health-monitoring"), skill_record("x y"),
                          skill_record("fresh", name="Fresh")], ORIGIN)
    assert joined.added == ["fresh"] and joined.shadowed == ["health-monitoring"]
    assert joined.skipped == ["x y"]
    assert local.get("health-monitoring").description == "local"
    assert local.get("fresh").actions == {} and local.get("fresh").origin.startswith(ORIGIN)


def test_an_instruction_skill_is_routed_to_as_instructions_never_as_an_action():
    registry = discover(search_path())  # the bundled skills beside it
    join(registry, [skill_record("gpu-fans", description="Quiet the GPU fans of the host",
                                 tags=["gpu", "fans"])], ORIGIN)
    route = router_of(registry).route("how do I quiet the gpu fans")
    assert route.status == "matched" and route.best.skill == "gpu-fans"
    assert route.best.instructions and route.best.action == ""
    assert route.as_dict()["candidates"][0]["instructions"] is True
    named = router_of(registry).route("read /gpu-fans")
    assert named.best.instructions
