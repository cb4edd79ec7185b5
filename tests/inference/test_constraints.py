"""The constraint compiler with SmolLM2's real tokenizer: what it enforces, relaxes and refuses,
its limits and cache, and the matcher's masking. Texts are fed token by token, as a model would."""

from __future__ import annotations

import numpy as np
import pytest

from inference.constraints import (
    AnyJsonObject,
    Choice,
    CompileLimits,
    ConstraintCompiler,
    ConstraintFailed,
    Grammar,
    JsonSchema,
    Regex,
    allocate_bitmask,
    apply_bitmask,
    fill_masks,
)
from inference.constraints.tool_formats import GENERIC
from llmservice.errors import InvalidRequest, UnsupportedParameter


def follows(compiler, constraint, text: str) -> bool:
    """Whether a model could write exactly `text` under `constraint` (and stop there)."""
    matcher = compiler.compile(constraint).matcher()
    for token in compiler.tokenizer.tokenize_str(text):
        if not matcher.consume(token):
            return False
    return matcher.is_accepting()


def schema(s, strict=False):
    return JsonSchema(s, strict=strict, param="response_format.json_schema.schema")


# Every keyword we claim to enforce: (schema, an answer it allows, an answer it must refuse).
ENFORCED = {
    "type": ({"type": "integer"}, "12", '"12"'),
    "type list": ({"type": ["integer", "null"]}, "null", "true"),
    "properties": ({"type": "object", "properties": {"a": {"type": "integer"}}}, '{"a":1}', '{"a":"x"}'),
    "required": ({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}, '{"a":1}', "{}"),
    "additionalProperties false": (
        {"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": False}, '{"a":1}', '{"a":1,"b":2}'),
    "additionalProperties schema": ({"type": "object", "additionalProperties": {"type": "integer"}}, '{"x":1}', '{"x":"y"}'),
    "enum": ({"enum": ["red", "green"]}, '"red"', '"blue"'),
    "const": ({"const": "ok"}, '"ok"', '"no"'),
    "anyOf": ({"anyOf": [{"type": "integer"}, {"type": "boolean"}]}, "true", '"x"'),
    "oneOf (disjoint)": ({"oneOf": [{"type": "integer"}, {"type": "string", "maxLength": 3}]}, '"abc"', "null"),
    "allOf": ({"allOf": [{"type": "integer"}, {"maximum": 5}]}, "5", "6"),
    "$ref and $defs": ({"$defs": {"N": {"type": "integer"}}, "$ref": "#/$defs/N"}, "3", '"3"'),
    "definitions": ({"definitions": {"N": {"type": "boolean"}}, "$ref": "#/definitions/N"}, "false", "0"),
    "items": ({"type": "array", "items": {"type": "integer"}}, "[1,2]", '[1,"2"]'),
    "prefixItems": ({"type": "array", "prefixItems": [{"type": "integer"}, {"type": "string"}], "items": False}, '[1,"a"]', '[1,2]'),
    "items array (draft 7)": ({"type": "array", "items": [{"type": "integer"}], "maxItems": 2}, '[1,"x"]', '["x"]'),
    "additionalItems": ({"type": "array", "items": [{"type": "integer"}], "additionalItems": False}, "[1]", '[1,2]'),
    "minItems": ({"type": "array", "items": {"type": "integer"}, "minItems": 2}, "[1,2]", "[1]"),
    "maxItems": ({"type": "array", "items": {"type": "integer"}, "maxItems": 1}, "[1]", "[1,2]"),
    "minLength": ({"type": "string", "minLength": 2}, '"ab"', '"a"'),
    "maxLength": ({"type": "string", "maxLength": 2}, '"ab"', '"abc"'),
    "pattern": ({"type": "string", "pattern": "^[a-c]+$"}, '"abc"', '"abd"'),
    "minimum": ({"type": "integer", "minimum": 3}, "3", "2"),
    "maximum": ({"type": "number", "maximum": 3.5}, "3.5", "3.6"),
    "exclusiveMinimum": ({"type": "integer", "exclusiveMinimum": 3}, "4", "3"),
    "exclusiveMaximum": ({"type": "number", "exclusiveMaximum": 1000}, "999.5", "1000"),
    "multipleOf": ({"type": "integer", "multipleOf": 3}, "9", "10"),
    "patternProperties": (
        {"type": "object", "patternProperties": {"^x": {"type": "integer"}}, "additionalProperties": False}, '{"xa":1}', '{"ya":1}'),
    "minProperties": ({"type": "object", "additionalProperties": {"type": "integer"}, "minProperties": 1}, '{"a":1}', "{}"),
    "maxProperties": ({"type": "object", "additionalProperties": {"type": "integer"}, "maxProperties": 1}, '{"a":1}', '{"a":1,"b":2}'),
    "nullable (OpenAPI)": ({"type": "string", "maxLength": 3, "nullable": True}, "null", "1"),
    "format date": ({"type": "string", "format": "date"}, '"2024-02-29"', '"2024-02-30"'),
    "format time": ({"type": "string", "format": "time"}, '"12:30:00Z"', '"25:00:00Z"'),
    "format date-time": ({"type": "string", "format": "date-time"}, '"2024-01-02T03:04:05Z"', '"2024-01-02"'),
    "format email": ({"type": "string", "format": "email"}, '"ann@example.com"', '"ann"'),
    "format uri": ({"type": "string", "format": "uri"}, '"https://example.com/a"', '"not a uri"'),
    "format uuid": ({"type": "string", "format": "uuid"}, '"123e4567-e89b-12d3-a456-426614174000"', '"123"'),
    "format ipv4": ({"type": "string", "format": "ipv4"}, '"10.0.0.1"', '"10.0.0.256"'),
    "format ipv6": ({"type": "string", "format": "ipv6"}, '"::1"', '"1.2.3.4"'),
    "format hostname": ({"type": "string", "format": "hostname"}, '"example.com"', '"-bad-"'),
    "format duration": ({"type": "string", "format": "duration"}, '"P3D"', '"3 days"'),
    "discriminator (tagged union)": (
        {
            "oneOf": [
                {"type": "object", "properties": {"kind": {"const": "a"}, "n": {"type": "integer"}}, "required": ["kind", "n"]},
                {"type": "object", "properties": {"kind": {"const": "b"}, "s": {"type": "string"}}, "required": ["kind", "s"]},
            ],
            "discriminator": {"propertyName": "kind"},
        },
        '{"kind":"b","s":"x"}',
        '{"kind":"b","n":1}',
    ),
}


@pytest.mark.parametrize("keyword", list(ENFORCED))
def test_enforced_keywords_allow_valid_and_refuse_invalid_output(compiler, keyword):
    s, good, bad = ENFORCED[keyword]
    for strict in (True, False):
        assert compiler.compile(schema(s, strict)).relaxed == ()
        assert follows(compiler, schema(s, strict), good), (keyword, good)
        assert not follows(compiler, schema(s, strict), bad), (keyword, bad)


def test_an_object_without_additional_properties_gets_no_others(compiler):
    s = {"type": "object", "properties": {"a": {"type": "integer"}}}
    assert not follows(compiler, schema(s), '{"a":1,"b":2}')
    with_all_of = {"allOf": [s, {"properties": {"b": {"type": "integer"}}}]}  # taken as written
    assert follows(compiler, schema(with_all_of), '{"a":1,"b":2}')


# Keywords llguidance can't enforce: (schema, keyword, the path it is reported at).
UNENFORCEABLE = [
    ({"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True}}},
     "uniqueItems", "#/properties/tags"),
    ({"not": {"type": "string"}}, "not", "#"),
    ({"type": "object", "if": {"required": ["a"]}, "then": {"required": ["b"]}}, "if", "#"),
    ({"type": "object", "propertyNames": {"maxLength": 3}}, "propertyNames", "#"),
    ({"type": "array", "items": {"$ref": "#/$defs/L"}, "$defs": {"L": {"type": "array", "contains": {"type": "integer"}}}},
     "contains", "#/$defs/L"),
    ({"type": "object", "dependentRequired": {"a": ["b"]}}, "dependentRequired", "#"),
    ({"type": "object", "unevaluatedProperties": False}, "unevaluatedProperties", "#"),
    ({"oneOf": [{"type": "string"}, {"type": "string", "maxLength": 3}]}, "oneOf", "#"),
    ({"type": "object", "properties": {"w": {"type": "string", "format": "weekday"}}}, "format", "#/properties/w"),
    ({"type": "object", "properties": {"a b/c": {"type": "array", "uniqueItems": True}}}, "uniqueItems", "#/properties/a%20b~1c"),
    # Keys beyond `properties` may repeat ({"x_a":1,"x_a":2}): a parser keeps one, under the minimum.
    ({"type": "object", "patternProperties": {"^x_": {"type": "integer"}}, "minProperties": 2}, "minProperties", "#"),
    ({"type": "object", "properties": {"m": {"type": "object", "required": ["a"], "minProperties": 3,
                                             "properties": {"a": {"type": "integer"}}, "additionalProperties": {"type": "integer"}}}},
     "minProperties", "#/properties/m"),
    ({"type": "object", "minProperties": 2}, "minProperties", "#"),
]


@pytest.mark.parametrize("s, keyword, path", UNENFORCEABLE)
def test_strict_refuses_an_unenforceable_keyword_by_name_and_path(compiler, s, keyword, path):
    with pytest.raises(UnsupportedParameter) as caught:
        compiler.compile(schema(s, strict=True))
    assert f"'{keyword}' at {path} " in caught.value.message
    assert caught.value.param == "response_format.json_schema.schema"


@pytest.mark.parametrize("s, keyword, path", UNENFORCEABLE)
def test_non_strict_relaxes_it_and_says_where(compiler, s, keyword, path):
    compiled = compiler.compile(schema(s, strict=False))
    assert f"{keyword} at {path}" in [str(r) for r in compiled.relaxed]


@pytest.mark.parametrize("s", [
    {"type": "object", "patternProperties": {"^x_": {"type": "integer"}}, "minProperties": 1},  # any key makes 1
    {"type": "object", "required": ["a", "b"], "properties": {"a": {}, "b": {}}, "additionalProperties": True, "minProperties": 2},
])
def test_strict_keeps_a_min_properties_that_holds(compiler, s):
    assert compiler.compile(schema(s, strict=True)).relaxed == ()
    assert not follows(compiler, schema(s, strict=True), "{}")


def test_relaxed_keywords_are_dropped_but_the_rest_is_enforced(compiler):
    s = {"type": "array", "items": {"type": "integer", "maximum": 5}, "uniqueItems": True, "maxItems": 3}
    assert follows(compiler, schema(s), "[1,1]")  # uniqueItems relaxed
    assert not follows(compiler, schema(s), "[1,6]")  # maximum still enforced
    assert not follows(compiler, schema(s), "[1,2,3,4]")  # maxItems still enforced


def test_json_object_is_one_compact_object(compiler):
    constraint = AnyJsonObject(param="response_format")
    assert follows(compiler, constraint, '{"a":[1,{"b":null}]}')
    assert not follows(compiler, constraint, '{"a": 1}')
    assert not follows(compiler, constraint, "[1]")


@pytest.mark.parametrize(
    "constraint, good, bad",
    [
        (Regex(r"[a-z]{2}-\d{3}", "guided_regex"), "ab-123", "ab-12"),
        (Choice(("yes", "no"), "guided_choice"), "no", "maybe"),
        (Grammar('start: "hi " NAME\nNAME: /[A-Z][a-z]+/', "lark", "guided_grammar"), "hi Ann", "hi ann"),
        (Grammar('root ::= "hi " [A-Z] [a-z]+', "gbnf", "guided_grammar"), "hi Ann", "hi ann"),
    ],
)
def test_regex_choice_and_grammars(compiler, constraint, good, bad):
    assert follows(compiler, constraint, good)
    assert not follows(compiler, constraint, bad)


@pytest.mark.parametrize(
    "constraint",
    [
        Grammar("start: missing_rule", "lark", "guided_grammar"),
        Grammar("root ::= (", "gbnf", "guided_grammar"),
        Regex("a(", "guided_regex"),
        JsonSchema({"type": "strin"}, strict=False, param="guided_json"),
        JsonSchema({"$ref": "#/$defs/nope"}, strict=False, param="guided_json"),
    ],
)
def test_broken_constraints_are_invalid_requests(compiler, constraint):
    with pytest.raises(InvalidRequest) as caught:
        compiler.compile(constraint)
    assert caught.value.param == constraint.param and caught.value.status == 400


# --- safety -------------------------------------------------------------------------------------
def test_a_ref_cycle_is_refused_at_the_first_mask(compiler):
    with pytest.raises(InvalidRequest) as caught:
        compiler.compile(schema({"$defs": {"a": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"}))
    assert "no output can satisfy it" in caught.value.message


def test_too_deep_and_too_big_are_refused(compiler):
    deep: dict = {"type": "string"}
    for _ in range(200):
        deep = {"type": "object", "properties": {"a": deep}}
    with pytest.raises(InvalidRequest, match="nested deeper than"):
        compiler.compile(schema(deep))
    big = {"type": "object", "properties": {f"p{i}": {"type": "string", "description": "x" * 100} for i in range(2000)}}
    with pytest.raises(InvalidRequest, match="too large"):
        compiler.compile(schema(big))


@pytest.mark.parametrize(
    "s",
    [
        {"type": "string", "maxLength": 20000},
        {"type": "string", "maxLength": 1000000000},
        {"type": "string", "pattern": "^a{1,20000}$"},
        {"type": "array", "items": {"type": "integer"}, "minItems": 1000000},
        {"type": "string", "pattern": "^(a+)+$"},
    ],
)
def test_huge_bounds_compile_without_building_them(compiler, s):
    matcher = compiler.compile(schema(s)).matcher()
    logits = np.zeros(compiler.n_vocab, dtype=np.float32)
    matcher.apply(logits)
    assert np.isfinite(logits).any()


def test_a_limit_hit_while_generating_fails_that_sequence_cleanly(smollm2_tokenizer, smollm2_vocab):
    """The lexer's state limit shows only as the output grows: the matcher fails, never hangs."""
    tight = ConstraintCompiler(
        smollm2_tokenizer, n_vocab=smollm2_vocab.n_vocab(), tool_format=GENERIC, limits=CompileLimits(max_lexer_states=50)
    )
    matcher = tight.compile(Regex("(a|b|c|d)*a(a|b|c|d){12}", "guided_regex")).matcher()
    logits = np.zeros(tight.n_vocab, dtype=np.float32)
    consumed = []
    for token in smollm2_tokenizer.tokenize_str("abcdabcdabcdbbbbaaaacccdddababab"):
        matcher.apply(logits)
        consumed.append(matcher.consume(token))
        if not consumed[-1]:
            break
    assert consumed[-1] is False and consumed[0] is True
    failure = matcher.failure()
    assert isinstance(failure, ConstraintFailed) and "too many states" in failure.message


def test_a_matcher_that_failed_while_masking_refuses_even_the_end(smollm2_tokenizer, smollm2_vocab):
    """Its mask then allows only the end of sequence; taking it must still report the failure, not
    end the answer as if it were complete (llguidance itself accepts the end there)."""
    tight = ConstraintCompiler(
        smollm2_tokenizer, n_vocab=smollm2_vocab.n_vocab(), tool_format=GENERIC, limits=CompileLimits(max_lexer_states=50)
    )
    matcher = tight.compile(Regex("(a|b|c|d)*a(a|b|c|d){12}", "guided_regex")).matcher()
    for token in smollm2_tokenizer.tokenize_str("aadb"):  # what SmolLM2 writes after "Letters: "
        matcher.apply(np.zeros(tight.n_vocab, dtype=np.float32))
        assert matcher.consume(token)
    logits = np.zeros(tight.n_vocab, dtype=np.float32)
    matcher.apply(logits)  # the lexer runs out of states here
    assert set(np.flatnonzero(np.isfinite(logits))) == set(tight.eos_tokens)
    assert not matcher.consume(tight.eos_tokens[0])
    assert isinstance(matcher.failure(), ConstraintFailed) and "too many states" in matcher.failure().message


def test_a_small_size_limit_is_applied(smollm2_tokenizer, smollm2_vocab):
    small = ConstraintCompiler(smollm2_tokenizer, n_vocab=smollm2_vocab.n_vocab(), tool_format=GENERIC, limits=CompileLimits(max_bytes=100))
    with pytest.raises(InvalidRequest, match="too large"):
        small.compile(Choice(tuple(f"option {i}" for i in range(20)), "guided_choice"))


# --- cache ----------------------------------------------------------------------------------------
def test_compiled_constraints_are_cached_by_content(compiler):
    first = compiler.compile(schema({"type": "integer"}))
    assert compiler.compile(schema({"type": "integer"})) is first
    assert compiler.compile(schema({"type": "integer"}, strict=True)) is not first
    assert first.matcher() is not first.matcher()  # each sequence gets its own state


def test_failures_are_cached_and_raised_afresh(compiler):
    bad = schema({"type": "array", "uniqueItems": True}, strict=True)
    errors = []
    for _ in range(2):
        with pytest.raises(UnsupportedParameter) as caught:
            compiler.compile(bad)
        errors.append(caught.value)
    assert errors[0] is not errors[1] and errors[0].message == errors[1].message


def test_the_cache_is_bounded(smollm2_tokenizer, smollm2_vocab):
    small = ConstraintCompiler(smollm2_tokenizer, n_vocab=smollm2_vocab.n_vocab(), tool_format=GENERIC, limits=CompileLimits(cache_size=2))
    first = small.compile(Regex("a", "r"))
    small.compile(Regex("b", "r"))
    small.compile(Regex("c", "r"))
    assert small.compile(Regex("a", "r")) is not first


# --- the matcher --------------------------------------------------------------------------------
def test_apply_masks_everything_the_grammar_forbids(compiler):
    matcher = compiler.compile(Choice(("yes", "no"), "c")).matcher()
    logits = np.zeros(compiler.n_vocab, dtype=np.float32)
    matcher.apply(logits)
    allowed = np.flatnonzero(np.isfinite(logits))
    texts = {compiler.tokenizer.decode_str([int(t)]) for t in allowed}
    assert texts and all("yes".startswith(t) or "no".startswith(t) for t in texts)


def test_batched_masks_match_single_ones(compiler):
    a = compiler.compile(Choice(("yes", "no"), "c")).matcher()
    b = compiler.compile(Regex("[0-9]+", "r")).matcher()
    bitmask = allocate_bitmask(compiler.n_vocab, rows=2)
    fill_masks([(a, 0), (b, 1)], bitmask)
    logits = np.zeros((2, compiler.n_vocab), dtype=np.float32)
    apply_bitmask(logits, bitmask)
    for row, matcher in ((0, compiler.compile(Choice(("yes", "no"), "c")).matcher()), (1, compiler.compile(Regex("[0-9]+", "r")).matcher())):
        single = np.zeros(compiler.n_vocab, dtype=np.float32)
        matcher.apply(single)
        assert np.array_equal(np.isfinite(logits[row]), np.isfinite(single))


def test_a_forbidden_token_is_a_failure_with_a_clear_error(compiler):
    matcher = compiler.compile(Choice(("yes",), "guided_choice")).matcher()
    (token,) = compiler.tokenizer.tokenize_str("x")[:1]
    assert not matcher.consume(token)
    failure = matcher.failure()
    assert isinstance(failure, ConstraintFailed) and failure.param == "guided_choice" and failure.status == 400
    logits = np.zeros(compiler.n_vocab, dtype=np.float32)
    matcher.apply(logits)  # a failed matcher allows only the end of the sequence
    assert set(np.flatnonzero(np.isfinite(logits))) == set(compiler.eos_tokens)


def test_a_complete_answer_stops_the_matcher(compiler):
    matcher = compiler.compile(Choice(("yes",), "c")).matcher()
    for token in compiler.tokenizer.tokenize_str("yes"):
        assert matcher.consume(token)
    assert matcher.is_stopped() and matcher.is_accepting()
