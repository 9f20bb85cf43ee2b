"""The workflow and skill file format, as pydantic models.

These models are the edge: they check the shape of what a person wrote. Meaning
(names, dependencies, expressions, skills) is checked by the loader, and the engine
works on the plain graph that `graph.py` builds from them.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from . import step_sandbox

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: Any) -> Any:
    """Seconds from a number or a string such as "500ms", "30s", "1h30m"."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30, \"30s\", \"5m\" or \"1h30m\"")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        parts = _DURATION.findall(text)
        if parts and "".join(n + u for n, u in parts) == text.replace(" ", ""):
            return sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
        raise ValueError(f"{value!r} is not a duration: use seconds or units ms, s, m, h, d "
                         "(e.g. \"30s\", \"1h30m\")")
    return value


def _duration_schema(lo: float, hi: float) -> WithJsonSchema:
    """A duration's JSON Schema: a number of seconds in [lo, hi], or a string with units."""
    return WithJsonSchema({
        "anyOf": [{"type": "number", "minimum": lo, "maximum": hi},
                  {"type": "string", "pattern": r"^\s*(\d+(\.\d+)?\s*(ms|s|m|h|d)\s*)+$"}],
        "description": "Seconds, or a duration such as \"500ms\", \"30s\", \"1h30m\"."})


# Spelled out rather than built by a function, so that type checkers see float aliases.
_Seconds: TypeAlias = Annotated[float, BeforeValidator(parse_duration)]
_DAY = 86400
Timeout: TypeAlias = Annotated[_Seconds, Field(ge=0.001, le=30 * _DAY),
                               _duration_schema(0.001, 30 * _DAY)]
Delay: TypeAlias = Annotated[_Seconds, Field(ge=0, le=_DAY), _duration_schema(0, _DAY)]
Retention: TypeAlias = Annotated[_Seconds, Field(ge=60, le=3650 * _DAY),
                                 _duration_schema(60, 3650 * _DAY)]
Version = Annotated[str, BeforeValidator(lambda v: str(v) if isinstance(v, (int, float)) else v)]
Name = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]*$", max_length=64)]
"""Skill, action, step and workflow names: usable in expressions, unit names and paths."""
_CAPABILITY = re.compile(r"^[a-z0-9][a-z0-9_-]*(\.[a-z0-9][a-z0-9_-]*)*$")
Capability = Annotated[str, Field(pattern=_CAPABILITY.pattern, max_length=128)]
"""What an action can do, as dotted lower-case words: health.check, disk.free."""


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


RetryOn = Literal["retryable", "timeout", "failed"]


class RetryPolicy(Strict):
    """How often and how patiently to try an action again."""

    attempts: int = Field(1, ge=1, le=100, description="Total attempts, the first included.")
    backoff: Literal["fixed", "linear", "exponential"] = "exponential"
    initial: Delay = Field(1.0, description="Delay before the first retry.")
    factor: float = Field(2.0, ge=1.0, le=10.0, description="Growth of exponential delays.")
    max_delay: Delay = Field(300.0, description="Upper bound of any one delay.")
    jitter: Delay = Field(0.0, description="Up to this many random seconds added to a delay.")
    retry_on: list[RetryOn] = Field(
        default_factory=lambda: list[RetryOn](["retryable", "timeout"]),
        description="Which failures are retried: retryable (exit 75, HTTP 5xx, connection "
                    "errors), timeout, or failed (any failure).")


class HttpSpec(Strict):
    url: Annotated[str, Field(pattern=r"^https?://")]
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)


class RollbackSpec(Strict):
    """A compensating action, run when the workflow rolls back a succeeded step."""

    action: Name
    skill: Name | None = Field(None, description="Defaults to the step's own skill.")
    params: dict[str, Any] | None = Field(
        None, description="Defaults to the params the step ran with; may use {{ }}.")


class ActionSpec(Strict):
    """One thing a skill can do: a command, an HTTP call or a Python callable."""

    description: str | None = None
    command: list[Annotated[str, Field(min_length=1)]] | None = Field(
        None, min_length=1, description="argv; never run through a shell.")
    http: HttpSpec | None = None
    python: Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")] | None = None
    params: dict[str, Any] | None = Field(None, description="JSON Schema of the params.")
    env: dict[str, str] = Field(default_factory=dict)
    timeout: Timeout | None = None
    retry: RetryPolicy | None = None
    rollback: RollbackSpec | None = None
    capabilities: list[Capability] = Field(
        default_factory=list, description="What it can do, for routing: health.check.")
    examples: list[Annotated[str, Field(min_length=1, max_length=500)]] = Field(
        default_factory=list, description="Requests it serves, as a person would ask.")
    mutating: bool = Field(False, description="It changes the system; `route --run` does "
                                              "not run it unasked.")
    sandbox: dict[str, Any] | None = Field(
        None, description="systemd unit properties of its step unit, over the skill's and "
                          "the default sandbox (command actions only)")

    @field_validator("sandbox")
    @classmethod
    def _sandbox(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else step_sandbox.check(value)

    @model_validator(mode="after")
    def _one_kind(self) -> ActionSpec:
        kinds = [k for k in ("command", "http", "python") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("an action needs exactly one of command, http or python"
                             + (f" (got {', '.join(kinds)})" if kinds else ""))
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("command", "http", "python") if getattr(self, k) is not None)


class SkillSpec(Strict):
    """A skill declared inline (YAML, JSON or Nix) or by a directory's actions.yaml."""

    description: str = ""
    version: Version | None = None
    concurrency: int | None = Field(None, ge=1, le=1000,
                                    description="At most this many of its steps at once.")
    tags: list[str] = Field(default_factory=list)
    capabilities: list[Capability] = Field(default_factory=list,
                                           description="Of the skill as a whole.")
    actions: dict[Name, ActionSpec] = Field(min_length=1)


TriggerRule = Literal["all_success", "all_done", "none_failed", "one_failed"]


STORED = {"stored": True}
"""Validation context of a definition stored with a run: its routed steps carry the skill
and action they were resolved to when the run started, beside their route or capability."""

_CHOICES = ("skill", "route", "capability")


class Step(Strict):
    """One action of one skill, with what it waits for and how it may fail."""

    model_config = ConfigDict(json_schema_extra={"oneOf": [
        {"required": ["skill", "action"]}, {"required": ["route"]},
        {"required": ["capability"]}]})

    id: Name | None = Field(None, description="Defaults to the skill's name (the resolved "
                                              "one for `route` and `capability`).")
    skill: Name | None = Field(None, description="The skill to run an action of; or choose "
                               "the action with `route` or `capability` instead.")
    action: Name | None = Field(None, description="The action of `skill` (required with it).")
    route: Annotated[str, Field(min_length=1, max_length=500)] | None = Field(
        None, description="A request in words (\"check that the host is healthy\"), routed to "
        "one skill's action when the workflow loads, as `orchestratorctl route` does; "
        "ambiguous or no match is a validation error. The run records the resolution.")
    capability: Capability | None = Field(
        None, description="A declared capability (health.check) that exactly one action has; "
        "resolved when the workflow loads and recorded with the run.")
    description: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    depends_on: list[str] | None = Field(
        None, description="Step ids or skill names; absent means the item before.")
    when: str | None = Field(None, description="Run only if this expression is true.")
    trigger_rule: TriggerRule = Field(
        "all_success", description="all_success: every dependency succeeded; none_failed: "
        "none failed (skips allowed); all_done: run whatever they ended as; one_failed: "
        "run only if one failed.")
    retry: RetryPolicy | None = None
    timeout: Timeout | None = None
    continue_on_error: bool = False
    rollback: RollbackSpec | None = None

    @field_validator("when", mode="before")
    @classmethod
    def _when_text(cls, value: Any) -> Any:
        # YAML reads `when: true` as a boolean; it is a constant expression all the same.
        return str(value).lower() if isinstance(value, bool) else value

    @model_validator(mode="after")
    def _one_choice(self, info: ValidationInfo) -> Step:
        chosen = [k for k in _CHOICES if getattr(self, k) is not None]
        if chosen[:1] == ["skill"] and len(chosen) > 1 and self.action is not None \
                and (info.context or {}).get("stored"):
            return self  # a routed step of a stored run, pinned to its resolution
        if len(chosen) != 1:
            raise ValueError("a step needs exactly one of skill (with action), route or "
                             "capability" + (f" (got {', '.join(chosen)})" if chosen else ""))
        if self.skill is not None and self.action is None:
            raise ValueError(f"missing required key 'action' (which action of skill "
                             f"'{self.skill}' to run)")
        if self.skill is None and self.action is not None:
            raise ValueError(f"`action` goes with `skill`; `{chosen[0]}` chooses the action itself")
        return self

    @property
    def routed(self) -> str | None:
        """How the step chose its action, if not by naming it: "route: ..." or "capability: ..."."""
        if self.route is not None:
            return f"route: {self.route}"
        return f"capability: {self.capability}" if self.capability is not None else None


class ParallelGroup(Strict):
    """Members run concurrently; the group is one item of the step sequence."""

    id: Name | None = Field(
        None, description="Defaults to parallel-N for the N-th group without an id.")
    parallel: list[Step] = Field(min_length=1)
    depends_on: list[str] | None = None


def _item_kind(value: Any) -> str:
    # Called on raw data when validating and on model instances when serialising.
    group = isinstance(value, ParallelGroup) or (isinstance(value, dict) and "parallel" in value)
    return "parallel" if group else "step"


StepItem = Annotated[Annotated[Step, Tag("step")] | Annotated[ParallelGroup, Tag("parallel")],
                     Discriminator(_item_kind)]


class ParamSpec(Strict):
    """A workflow parameter; a plain value in the file is shorthand for its default."""

    default: Any = None
    required: bool = False
    type: Literal["string", "integer", "number", "boolean", "array", "object"] | None = None
    description: str | None = None
    secret: bool = False


def _param_shorthand(value: Any) -> Any:
    return value if isinstance(value, dict) else {"default": value}


class Workflow(Strict):
    name: Name
    description: str | None = None
    params: dict[Name, Annotated[ParamSpec, BeforeValidator(_param_shorthand),
                                 WithJsonSchema({"anyOf": [ParamSpec.model_json_schema(),
                                                           {"not": {"type": "object"}}]})]] = \
        Field(default_factory=dict)
    concurrency: int = Field(8, ge=1, le=10000, description="At most this many steps at once.")
    timeout: Timeout | None = None
    on_failure: Literal["fail", "rollback"] = "fail"
    outputs: dict[str, Any] = Field(default_factory=dict)
    steps: list[StepItem] = Field(min_length=1)


class WorkflowDocument(Strict):
    """A workflow file: the workflow and any skills it declares inline."""

    workflow: Workflow
    skills: dict[Name, SkillSpec] = Field(default_factory=dict)


class SkillFrontmatter(BaseModel):
    """SKILL.md frontmatter (OpenSkills / Anthropic); other keys are the agent's business."""

    model_config = ConfigDict(extra="allow")
    name: Name
    description: str = Field(min_length=1)
    version: Version | None = None
    # Agent Skills' free map of strings; `capabilities` in it ("health.check disk.free")
    # is what the orchestrator routes by. `tags` as skill registries (AIDB) list them.
    metadata: dict[str, Version] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)

    @field_validator("tags", mode="before")
    @classmethod
    def _tag_words(cls, value: Any) -> Any:
        return value.split() if isinstance(value, str) else value

    @property
    def capabilities(self) -> list[str]:
        return str(self.metadata.get("capabilities", "")).replace(",", " ").split()

    @model_validator(mode="after")
    def _capability_words(self) -> SkillFrontmatter:
        bad = [c for c in self.capabilities if not _CAPABILITY.match(c)]
        if bad:
            raise ValueError(f"metadata.capabilities: {', '.join(map(repr, bad))} is not a "
                             "capability: dotted lower-case words such as health.check")
        return self


class SkillActions(Strict):
    """actions.yaml beside a SKILL.md: what the orchestrator can run of that skill."""

    concurrency: int | None = Field(None, ge=1, le=1000)
    actions: dict[Name, ActionSpec] = Field(min_length=1)


UNION_TAGS = frozenset({"step", "parallel"})
"""Discriminator tags that pydantic puts into error locations; not part of a field path."""
