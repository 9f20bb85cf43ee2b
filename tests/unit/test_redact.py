"""Which values are secret, and that redaction hides them and nothing else."""

from __future__ import annotations

import logging

import pytest

from orchestratord.core.redact import (
    MASK,
    RunRedactor,
    Scrubber,
    SecretRegistry,
    mask_templated,
    redact,
    redact_definition,
    redact_workflow_params,
    secret_values,
)
from orchestratord.language.model import ParamSpec


@pytest.mark.parametrize("name", ["password", "db_passwd", "client_secret", "API_TOKEN",
                                  "apiKey", "api-key", "api_key", "credentials",
                                  "ssh_private_key", "privateKey"])
def test_names_that_look_secret_are_masked(name):
    assert redact({name: "hunter22", "user": "alice"}) == {name: MASK, "user": "alice"}


def test_numbers_and_flags_under_secret_names_stay():
    params = {"max_tokens": 4096, "use_token": True, "token": None}
    assert redact(params) == params


def test_nested_names_and_whole_secret_subtrees():
    value = {"db": {"host": "h", "password": "pw1234"}, "credentials": {"user": "u", "key": "k"},
             "list": [{"token": "t0k3n"}, "plain"]}
    assert redact(value) == {"db": {"host": "h", "password": MASK}, "credentials": MASK,
                             "list": [{"token": MASK}, "plain"]}


@pytest.mark.parametrize("mark", [{"secret": True}, {"writeOnly": True},
                                  {"format": "password"}])
def test_schema_marks(mark):
    schema = {"type": "object", "properties": {"pin": {"type": "string", **mark},
                                               "name": {"type": "string"}}}
    assert redact({"pin": "0000", "name": "n"}, schema) == {"pin": MASK, "name": "n"}


def test_schema_marks_nested_items_refs_and_combinators():
    schema = {
        "$defs": {"cred": {"type": "string", "secret": True}},
        "type": "object",
        "properties": {
            "servers": {"type": "array", "items": {
                "type": "object", "properties": {"login": {"$ref": "#/$defs/cred"}}}},
            "extra": {"additionalProperties": {"writeOnly": True}},
        },
        "allOf": [{"properties": {"pin": {"format": "password"}}}],
    }
    value = {"servers": [{"login": "abcd", "host": "a"}, {"login": "efgh"}],
             "extra": {"x": "1", "y": "2"}, "pin": 1234, "keep": "me"}
    assert redact(value, schema) == {"servers": [{"login": MASK, "host": "a"}, {"login": MASK}],
                                     "extra": {"x": MASK, "y": MASK}, "pin": MASK, "keep": "me"}
    # Strings and numbers of four characters or more are hunted; "1" and "2" are not.
    assert secret_values(value, schema) == {"abcd", "efgh", 1234}


def test_marks_inside_conditional_branches_and_tuples():
    schema = {"properties": {
        "auth": {"anyOf": [{"type": "string", "secret": True}, {"type": "null"}]},
        "pair": {"prefixItems": [{}, {"writeOnly": True}]},
        "mode": {"if": {"const": "key"}, "then": {"secret": True}}}}
    value = {"auth": "s3cr3t", "pair": ["user", "pa55"], "mode": "plain"}
    assert redact(value, schema) == {"auth": MASK, "pair": ["user", MASK], "mode": "plain"}


def test_an_unresolvable_ref_hides_everything_its_schema_covers():
    schema = {"properties": {"login": {"$ref": "#/$defs/missing"}}}
    assert redact({"login": "alice", "note": "n"}, schema) == MASK


def test_redact_returns_a_copy():
    value = {"password": "hunter22", "nested": {"token": "abcdef"}}
    redact(value)
    assert value == {"password": "hunter22", "nested": {"token": "abcdef"}}


def test_workflow_params_by_spec_and_by_name():
    specs = {"pin": ParamSpec(secret=True), "api_token": ParamSpec(), "host": ParamSpec()}
    params = {"pin": 4321, "api_token": "tok-123", "host": "example.org"}
    assert redact_workflow_params(params, specs) == {"pin": MASK, "api_token": MASK,
                                                     "host": "example.org"}
    # The stored JSON form of the specs works the same; shorthand values are not secret.
    stored = {"pin": {"secret": True}, "host": "default.example"}
    assert redact_workflow_params(params, stored)["pin"] == MASK


def test_scrubber_replaces_secrets_in_text_and_values():
    scrub = Scrubber(["s3cr3t-value", "ab"])  # "ab" is too short to hunt for
    assert scrub.text("auth failed: Bearer s3cr3t-value (ab)") == f"auth failed: Bearer {MASK} (ab)"
    assert scrub({"e": ["x s3cr3t-value"], "n": 3}) == {"e": [f"x {MASK}"], "n": 3}


def test_run_redactor_from_stored_run():
    definition = {
        "workflow": {"name": "w", "params": {"key": {"secret": True, "default": "default-secret"},
                                             "who": "anyone"},
                     "steps": [{"skill": "s", "action": "a", "params": {"password": "literal-pw",
                                                                      "pin": "literal-pin"}}]},
        "skills": {"s": {"actions": {"a": {"command": ["x"], "params": {
            "properties": {"pin": {"secret": True}}}}}}},
    }
    r = RunRedactor.for_run({"params": {"key": "given-secret", "who": "me"},
                             "definition": definition})
    assert r.params({"key": "given-secret", "who": "me"}) == {"key": MASK, "who": "me"}
    text = "given-secret default-secret literal-pw literal-pin me"
    assert r(text) == f"{MASK} {MASK} {MASK} {MASK} me"
    shown = redact_definition(definition)
    assert shown["workflow"]["params"]["key"]["default"] == MASK
    assert shown["workflow"]["steps"][0]["params"]["password"] == MASK
    assert "literal-pin" not in str(shown)


def test_registry_scrubs_log_records_of_its_runs():
    registry = SecretRegistry()
    registry.add("r1", {"topsecret"})
    logger = logging.getLogger("test.redact.registry")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)
    handler = Keep()
    logger.addHandler(handler)
    logger.addFilter(registry)
    try:
        logger.error("failed: %s", "topsecret", extra={"fields": {"RUN_ID": "r1"}})
        logger.error("other run: %s", "topsecret", extra={"fields": {"RUN_ID": "r2"}})
        try:
            raise ValueError("topsecret")
        except ValueError:
            logger.exception("boom", extra={"fields": {"RUN_ID": "r1"}})
    finally:
        logger.removeFilter(registry)
        logger.removeHandler(handler)
    assert records[0].getMessage() == f"failed: {MASK}"
    assert records[1].getMessage() == "other run: topsecret"  # not a secret of that run
    assert "topsecret" not in records[2].exc_text and MASK in records[2].exc_text
    assert registry.scrub("r1", {"error": "x topsecret"}) == {"error": f"x {MASK}"}
    registry.discard("r1")
    assert registry.scrub("r1", "topsecret") == "topsecret"


def test_number_secrets_are_masked_as_values_and_as_words_in_text():
    """Regression: a secret param `pin: 123789` showed in logs, show, reports and alerts."""
    scrub = Scrubber({123789, 31.4159})
    assert scrub({"pin": 123789, "again": [123789.0, 31.4159], "n": 1237890, "flag": True}) == \
        {"pin": MASK, "again": [MASK, MASK], "n": 1237890, "flag": True}
    assert scrub("pin=123789, pi 31.4159; id 1237890 a123789 123789.5 v123789") == \
        f"pin={MASK}, pi {MASK}; id 1237890 a123789 123789.5 v123789"
    # Short numbers, booleans and null are masked where they stand, not hunted.
    assert Scrubber({42, True, None, "ab"}).secrets == frozenset()


def test_declared_secrets_of_every_type_are_masked_where_they_stand():
    specs = {name: {"secret": True} for name in ("n", "b", "z", "l", "o")}
    params = {"n": 123789, "b": False, "z": None, "l": [1, "two"], "o": {"k": 7}}
    assert RunRedactor.for_run({"params": params, "definition": {"workflow": {
        "params": specs}}}).params(params) == dict.fromkeys(params, MASK)


def test_a_value_masked_by_its_key_in_a_result_is_hunted_everywhere():
    """Regression: a result's `token` showed in the clear once a later step received it
    under another name."""
    class Step:
        def __init__(self, result):
            self.result = result
    redactor = RunRedactor(None, None, [Step({"token": "tk-9f8e7d"}), Step(None)])
    assert redactor({"auth": "tk-9f8e7d", "note": "used tk-9f8e7d"}) == \
        {"auth": MASK, "note": f"used {MASK}"}


def test_a_step_param_templated_from_a_secret_is_masked_whole_unless_scrubbed():
    source = {"flag": "{{ params.flag }}", "header": "Bearer {{ params['pin'] }}",
              "short": "x{{ params.ab }}", "other": "{{ params.user }}", "plain": "p"}
    rendered = {"flag": True, "header": "Bearer 123789", "short": "xab", "other": "u",
                "plain": "p"}
    shown = Scrubber({123789})(rendered)
    assert mask_templated(source, rendered, shown, {"flag", "pin", "ab"}) == \
        {"flag": MASK, "header": f"Bearer {MASK}", "short": MASK, "other": "u", "plain": "p"}
