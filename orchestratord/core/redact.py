"""Keeping secrets out of what people and machines read: logs, events, the API, reports.

A value is secret when the action's params JSON Schema says so (`"secret": true`,
`"writeOnly": true` or `"format": "password"`), when a workflow param is declared
`secret: true`, or when its key looks like one (password, token, api_key, ...) at any
depth. Two tools follow from that:

- `redact(value, schema)` masks secret values where the structure says where they are;
- `Scrubber` hunts the secret *values* wherever they turn up: an error message quoting a
  param, a stderr line, a result echoing its input, a templated header such as
  "Bearer {{ params.api_token }}", a later step's param that received a value masked
  in an earlier step's result under a secret-looking key.

A secret of any JSON type is masked where it stands. Hunted elsewhere: strings of
MIN_SCRUB_LENGTH characters or more, inside any text or value; numbers as long (a PIN
123789), as equal values in structures and as standalone words in text ("pin 123789"
becomes "pin ***", "1237890" stays). Booleans, null and shorter values are not hunted
(masking every `true` or 42 would hide everything); a step param templated from such a
secret param is masked whole instead (`mask_templated`).

What the engine needs to run stays as given (a run's params and the step results, so
that resume can render the same params again); everything on the way out is redacted.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
from collections.abc import Iterable, Mapping
from typing import Any

import jsonschema
import referencing.exceptions

MASK = "***"
SECRET_NAME = re.compile(r"password|passwd|secret|token|api[_-]?key|credential|private[_-]?key",
                         re.IGNORECASE)
MIN_SCRUB_LENGTH = 4  # shorter values are masked where they stand, not hunted
Secret = str | int | float  # a value hunted wherever it turns up


def _number_text(value: Any) -> str | None:
    """The decimal form of a number as JSON writes it; None for anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return repr(value) if isinstance(value, float) else str(value)
    except ValueError:  # an int past Python's digit limit: masked where it stands only
        return None


def is_huntable(value: Any) -> bool:
    """Whether value is long enough to hunt (strings and numbers; see the docstring)."""
    if isinstance(value, str):
        return len(value) >= MIN_SCRUB_LENGTH and "{{" not in value
    text = _number_text(value)
    return text is not None and len(text) >= MIN_SCRUB_LENGTH


def is_secret_name(name: Any) -> bool:
    return isinstance(name, str) and SECRET_NAME.search(name) is not None


def is_secret_schema(schema: Any) -> bool:
    return isinstance(schema, Mapping) and (
        schema.get("secret") is True or schema.get("writeOnly") is True
        or schema.get("format") == "password")


def _secret_by_name(name: Any, value: Any) -> bool:
    # Numbers and flags under such names are counts and switches (max_tokens: 4096,
    # use_token: true), not credentials; strings, lists and mappings may be.
    return is_secret_name(name) and value is not None and not isinstance(value, (bool, int, float))


# -- where a schema marks secrets ----------------------------------------------------------
#
# jsonschema already knows how a schema applies to an instance ($ref, allOf/anyOf/oneOf,
# if/then/else, items and prefixItems, patternProperties, additionalProperties, each
# draft's own rules), so the marks are found by validating: a validator extended with a
# keyword that reports every place a secret mark applies, as an "error" at that path.

_MARK = "secret here"


def _report_secret(validator: Any, value: Any, instance: Any, schema: Any) -> Iterable[Any]:
    if is_secret_schema(schema):
        yield jsonschema.ValidationError(_MARK)


@functools.cache
def _finder(base: type) -> type:
    keywords = {k: _report_secret for k in ("secret", "writeOnly", "format")}
    return jsonschema.validators.extend(base, keywords)


def _marked_paths(value: Any, schema: Mapping[str, Any]) -> set[tuple]:
    """The paths in value at which the schema marks a secret (() is value itself)."""
    base = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        errors = list(_finder(base)(schema).iter_errors(value))
    except referencing.exceptions.Unresolvable:
        # A $ref that leads nowhere: where the marks are is unknown, so all is secret.
        return {()}
    paths = set()
    while errors:  # marks inside anyOf/oneOf branches come back as an error's context
        error = errors.pop()
        if error.message == _MARK:
            paths.add(tuple(error.absolute_path))
        errors.extend(error.context or ())
    return paths


def _walk(value: Any, marked: set[tuple], path: tuple, found: set[str] | None) -> Any:
    if path in marked:
        return _mask(value, found)
    if isinstance(value, Mapping):
        return {key: _mask(item, found) if _secret_by_name(key, item)
                else _walk(item, marked, path + (key,), found) for key, item in value.items()}
    if isinstance(value, list):
        return [_walk(item, marked, path + (i,), found) for i, item in enumerate(value)]
    return value


def _mask(value: Any, found: set[Any] | None) -> Any:
    if found is not None:
        found.update(_leaves(value))
    return None if value is None else MASK


def _leaves(value: Any) -> Iterable[Any]:
    if isinstance(value, Mapping):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def redact(value: Any, schema: Mapping[str, Any] | None = None) -> Any:
    """A copy of value with secret values replaced by "***" (None stays None).

    schema is the action's params JSON Schema, if it has one; keys whose names look
    secret are masked with or without it, at any depth.
    """
    marked = _marked_paths(value, schema) if schema else set()
    return _walk(value, marked, (), None)


def secret_values(value: Any, schema: Mapping[str, Any] | None = None) -> set[Secret]:
    """The values `redact` would hide that are worth hunting elsewhere (strings and
    numbers of MIN_SCRUB_LENGTH characters or more, from every masked subtree)."""
    found: set[Any] = set()
    _walk(value, _marked_paths(value, schema) if schema else set(), (), found)
    return {v for v in found if is_huntable(v)}


def _spec_is_secret(spec: Any) -> bool:
    """A ParamSpec, or its JSON form as stored with a run (shorthand values are not)."""
    if isinstance(spec, Mapping):
        return spec.get("secret") is True
    return getattr(spec, "secret", False) is True


def redact_workflow_params(params: Mapping[str, Any] | None,
                           specs: Mapping[str, Any] | None) -> dict[str, Any]:
    """A run's params with those declared `secret: true` (or named like secrets) masked.

    specs maps param names to ParamSpec models or their stored JSON (a run's
    definition["workflow"]["params"]).
    """
    specs = specs or {}
    # A declared secret is masked whatever its value, null included.
    return {name: MASK if _spec_is_secret(specs.get(name)) else
            redact({name: value})[name] for name, value in (params or {}).items()}


def secret_param_names(specs: Mapping[str, Any] | None) -> set[str]:
    """The workflow params declared `secret: true`."""
    return {name for name, spec in (specs or {}).items() if _spec_is_secret(spec)}


def mask_templated(source: Any, rendered: Any, shown: Any, names: Iterable[str]) -> Any:
    """shown (rendered params, redacted) with each value templated from a secret param
    masked whole, unless scrubbing already hid the secret in it ("Bearer ***").

    This is how a secret that is not hunted (true, null, a short number) stays hidden
    once it flows into a step: source holds the step's params as written, with
    "{{ params.pin }}" where the secret goes.
    """
    either = "|".join(map(re.escape, names))
    if not either:
        return shown
    uses = re.compile(rf"\bparams\s*(?:\.\s*(?:{either})\b|\[\s*['\"](?:{either})['\"]\s*\])")
    return _mask_templated(source, rendered, shown, uses)


def _mask_templated(source: Any, rendered: Any, shown: Any, uses: re.Pattern) -> Any:
    if isinstance(source, str):
        if "{{" in source and uses.search(source) and not (
                isinstance(shown, str) and shown != rendered):
            return MASK
        return shown
    if isinstance(source, Mapping) and isinstance(rendered, Mapping) and isinstance(shown, Mapping):
        return {k: _mask_templated(source.get(k), rendered.get(k), v, uses) if k in source
                else v for k, v in shown.items()}
    if isinstance(source, list) and isinstance(rendered, list) and isinstance(shown, list) \
            and len(source) == len(rendered) == len(shown):
        return [_mask_templated(s, r, v, uses)
                for s, r, v in zip(source, rendered, shown, strict=True)]
    return shown


def workflow_param_secrets(params: Mapping[str, Any] | None,
                           specs: Mapping[str, Any] | None) -> set[Secret]:
    specs, found = specs or {}, set()
    for name, value in (params or {}).items():
        found |= (secret_values(value, {"secret": True}) if _spec_is_secret(specs.get(name))
                  else secret_values({name: value}))
    return found


# -- free-text scrubbing --------------------------------------------------------------------

class Scrubber:
    """Replaces known secret values wherever they occur, in text and JSON-like values
    (strings inside any text; numbers as values, and as words in text)."""

    def __init__(self, secrets: Iterable[Any] = ()):
        self.secrets: frozenset[Secret] = frozenset(s for s in secrets if is_huntable(s))
        self._numbers = frozenset(s for s in self.secrets if not isinstance(s, str))
        forms = [(s, re.escape(s)) for s in self.secrets if isinstance(s, str)]
        # A number's digits count only standing alone: not inside a longer number or word.
        forms += [(text, rf"(?<![\w.]){re.escape(text)}(?![\w]|\.\d)")
                  for text in {t for t in map(_number_text, self._numbers) if t is not None}]
        # Longest first, so a secret that contains another is replaced whole.
        forms.sort(key=lambda form: len(form[0]), reverse=True)
        self._pattern = re.compile("|".join(p for _, p in forms)) if forms else None

    def text(self, text: str) -> str:
        return self._pattern.sub(MASK, text) if self._pattern and text else text

    def __call__(self, value: Any) -> Any:
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {k: self(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self(v) for v in value]
        if _number_text(value) is not None and value in self._numbers:
            return MASK
        return value


class RunRedactor:
    """Everything about one run, made fit to show: params masked, secrets scrubbed.

    Built from what the store keeps of the run (its params as given and the definition
    it started with) and, where given, its steps' results: a value masked in a result
    because of its key is hunted in everything else. So the API, the CLI, reports and
    alerts redact alike without the skills at hand. Step params are stored redacted by
    the engine already.
    """

    def __init__(self, params: Mapping[str, Any] | None, definition: Mapping[str, Any] | None,
                 steps: Iterable[Any] = ()):
        definition = definition or {}
        workflow = definition.get("workflow") or {}
        self.param_specs: Mapping[str, Any] = workflow.get("params") or {}
        secrets = workflow_param_secrets(params, self.param_specs)
        for spec in self.param_specs.values():  # a secret default, even if not used
            if isinstance(spec, Mapping) and _spec_is_secret(spec):
                secrets |= secret_values(spec.get("default"), {"secret": True})
        skills = definition.get("skills") or {}
        for step in _steps(workflow.get("steps") or []):
            actions = (skills.get(step.get("skill")) or {}).get("actions") or {}
            action = actions.get(step.get("action"))
            schema = (action or {}).get("params")
            secrets |= secret_values(step.get("params") or {}, schema)
        self.scrub = Scrubber(secrets)
        self.learn(steps)

    @classmethod
    def for_run(cls, run: Any, steps: Iterable[Any] = ()) -> RunRedactor:
        """From a RunRow or its JSON form (needs its params and definition), and the
        run's StepRows if at hand."""
        get = run.get if isinstance(run, Mapping) else lambda k: getattr(run, k, None)
        return cls(get("params"), get("definition"), steps)

    def learn(self, steps: Iterable[Any]) -> None:
        """Hunt, from now on, the secret values in these steps' results too."""
        found = set().union(*(secret_values(s.result) for s in steps))
        if found - self.scrub.secrets:
            self.scrub = Scrubber(self.scrub.secrets | found)

    def params(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        """The run's own params, masked by their specs and names."""
        return self.scrub(redact_workflow_params(params, self.param_specs))

    def __call__(self, value: Any) -> Any:
        """Any JSON-like value about the run (results, errors, events): names masked,
        known secrets scrubbed."""
        return self.scrub(redact(value))

    def definition(self, source: Mapping[str, Any]) -> dict[str, Any]:
        """The workflow document: secret param defaults and secret step params masked."""
        doc = self(source)
        params = ((doc.get("workflow") or {}).get("params")) or {}
        for spec in params.values():
            if isinstance(spec, dict) and _spec_is_secret(spec) and "default" in spec:
                spec["default"] = _mask(spec["default"], None)
        return doc

    def rows(self, run: Any, steps: Iterable[Any] = (), attempts: Iterable[Any] = ()
             ) -> tuple[Any, list[Any], list[Any]]:
        """Store rows (RunRow, StepRow, AttemptRow dataclasses) with every field redacted."""
        steps = list(steps)
        self.learn(steps)
        run = dataclasses.replace(run, params=self.params(run.params), outputs=self(run.outputs),
                                  error=self.scrub(run.error),
                                  definition=self.definition(run.definition or {}))
        steps = [dataclasses.replace(s, params=self(s.params), result=self(s.result),
                                     error=self.scrub(s.error)) for s in steps]
        attempts = [dataclasses.replace(a, error=self.scrub(a.error),
                                        stderr_tail=self.scrub(a.stderr_tail)) for a in attempts]
        return run, steps, attempts


def _steps(items: Iterable[Any]) -> Iterable[Mapping[str, Any]]:
    for item in items:
        if isinstance(item, Mapping):
            if isinstance(item.get("parallel"), list):
                yield from _steps(item["parallel"])
            else:
                yield item


def redact_definition(source: Mapping[str, Any]) -> dict[str, Any]:
    """A workflow document fit to show, without a run (e.g. GET /workflows/NAME)."""
    return RunRedactor(None, source).definition(source)


# -- the engine's side ----------------------------------------------------------------------

class SecretRegistry(logging.Filter):
    """The secrets of the runs an engine drives, and a log filter that scrubs them.

    Installed on the engine's and the steps' loggers, it rewrites any record carrying
    a RUN_ID field before a handler sees it: a stderr line or an error quoting a
    secret reaches neither the journal nor stderr.
    """

    def __init__(self) -> None:
        super().__init__()
        self._secrets: dict[str, set[Secret]] = {}
        self._scrubbers: dict[str, Scrubber] = {}
        self._installed: list[logging.Logger] = []

    def add(self, run_id: str, values: Iterable[Any]) -> None:
        known = self._secrets.setdefault(run_id, set())
        new = {v for v in values if is_huntable(v)} - known
        if new:
            known |= new
            self._scrubbers[run_id] = Scrubber(known)

    def discard(self, run_id: str) -> None:
        self._secrets.pop(run_id, None)
        self._scrubbers.pop(run_id, None)

    def scrub(self, run_id: str | None, value: Any) -> Any:
        scrubber = self._scrubbers.get(run_id) if run_id else None
        return scrubber(value) if scrubber else value

    def filter(self, record: logging.LogRecord) -> bool:
        run_id = (getattr(record, "fields", None) or {}).get("RUN_ID")
        scrubber = self._scrubbers.get(run_id) if run_id and self._scrubbers else None
        if scrubber is not None:
            record.msg, record.args = scrubber.text(record.getMessage()), None
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = scrubber.text(record.exc_text)
        return True

    def install(self, *names: str) -> None:
        for name in names:
            logger = logging.getLogger(name)
            logger.addFilter(self)
            self._installed.append(logger)

    def uninstall(self) -> None:
        for logger in self._installed:
            logger.removeFilter(self)
        self._installed.clear()
