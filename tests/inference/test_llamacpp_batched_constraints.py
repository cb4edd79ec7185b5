"""Structured output and tool calls on the batched llama.cpp engine, with the real SmolLM2 GGUF.

Every sequence has its own matcher: constrained and free requests decode in the same steps, each
answer is valid for its own constraint, and each is the answer the same request gets alone.
"""

from __future__ import annotations

import dataclasses
import json
import re

import jsonschema
import pytest

from inference.constraints import (
    AnyJsonObject, Choice, CompileLimits, ConstraintCompiler, ConstraintFailed, Grammar, JsonSchema, Regex, ToolCalls,
)
from inference.engines.llamacpp_batched import BatchedLlamaEngine
from inference.params import ModelSpec
from llmservice.errors import InternalError
from tests.inference.engine_driver import RecordingJob, chat, completion, run, solo
from tests.inference.test_llamacpp_constraints import PING, SEARCH, TREE

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer", "minimum": 0, "maximum": 120}},
    "required": ["name", "age"],
    "additionalProperties": False,
}
PHONE = r"[0-9]{3}-[0-9]{4}"
LARK = 'start: "The answer is " NUMBER "."\nNUMBER: /[1-9][0-9]?/'


@pytest.fixture(scope="module")
def engine():
    from inference.bundled import smollm2_gguf

    spec = ModelSpec(name="light", backend="llamacpp", kind="chat", model_path=smollm2_gguf(),
                     load={"n_ctx": 1024, "n_threads": 2, "parallel": 8, "prompt_reuse": False},
                     defaults={})  # reuse off: answers compared must not depend on what an earlier test cached
    loaded = BatchedLlamaEngine.load(spec)
    yield loaded
    loaded.close()


def constrained(request, constraint, compiler: ConstraintCompiler):
    """The request as the manager's prepare step hands it over: its constraint compiled."""
    return dataclasses.replace(request, constraint=constraint, compiled=compiler.compile(constraint))


def batch_of_eight(engine):
    c = engine.constraint_compiler
    return [
        constrained(chat("A small family tree.", max_tokens=200), JsonSchema(TREE, strict=True, param="response_format"), c),
        chat("Write a short poem about the sea.", max_tokens=24),
        constrained(chat("Describe a person.", max_tokens=60), JsonSchema(PERSON, strict=True, param="response_format"), c),
        constrained(chat('Reply with {"ok": true}', max_tokens=40), AnyJsonObject("response_format"), c),
        constrained(completion("My phone number is", max_tokens=20), Regex(PHONE, "guided_regex"), c),
        chat("What is 2+2?", max_tokens=10, stop=["\n"]),
        constrained(chat("Is Paris in France?", max_tokens=10), Choice(("yes", "no"), "guided_choice"), c),
        constrained(chat("Find the height of the Eiffel tower.", max_tokens=80), ToolCalls((SEARCH,), "required", parallel=False), c),
    ]


def check_valid(engine, texts: list[str]) -> None:
    tree, poem, person, anything, phone, sum_, choice, call = texts
    jsonschema.validate(json.loads(tree), TREE)
    jsonschema.validate(json.loads(person), PERSON)
    assert isinstance(json.loads(anything), dict)
    assert re.fullmatch(PHONE, phone.strip()) or re.fullmatch(PHONE, phone), phone
    assert choice in ("yes", "no")
    answer = engine.tool_format.parse(call, "required")
    assert [name for name, _ in answer.calls] == ["search"]
    jsonschema.validate(json.loads(answer.calls[0][1]), SEARCH.parameters)
    assert poem and sum_


def test_constrained_and_free_sequences_in_one_batch_each_valid_and_as_alone(engine):
    requests = batch_of_eight(engine)
    alone = [solo(engine, r) for r in requests]
    together = [RecordingJob(r) for r in requests]
    run(engine, together)
    assert [t.failed for t in together] == [None] * 8
    texts = [t.text() for t in together]
    check_valid(engine, texts)
    assert texts == [a.text() for a in alone]
    assert [t.finished() for t in together] == [a.finished() for a in alone]
    for t in (together[0], together[2], together[6], together[7]):  # complete outputs end the answer
        assert t.finished().reason == "stop"


def test_a_constrained_request_joining_mid_flight(engine):
    c = engine.constraint_compiler
    free = chat("Tell me about cats.", max_tokens=30)
    schema = constrained(chat("Describe a person.", max_tokens=60), JsonSchema(PERSON, strict=True, param="response_format"), c)
    expected = solo(engine, free).text(), solo(engine, schema).text()
    running, joining = RecordingJob(free), RecordingJob(schema)

    def join(step):
        if step == 5:
            engine.admit(joining)

    run(engine, [running], on_step=join)
    assert (running.text(), joining.text()) == expected
    jsonschema.validate(json.loads(joining.text()), PERSON)


def test_started_reports_the_tool_format_and_relaxed_keywords(engine):
    schema = {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9}, "uniqueItems": True, "maxItems": 3}
    job = solo(engine, constrained(chat("Three digits."), JsonSchema(schema, strict=False, param="x"), engine.constraint_compiler))
    assert job.started.relaxed == ("uniqueItems at #",) and job.started.tool_format == "generic"
    assert all(0 <= n <= 9 for n in json.loads(job.text()))


def test_each_sequence_has_its_own_repeated_call_guard(engine):
    """ping takes no arguments: its answer stops at one call. A search beside it is unaffected."""
    c = engine.constraint_compiler
    ping = constrained(chat("Ping the network, then ping it again, and again.", max_tokens=120), ToolCalls((PING,), "required", parallel=True), c)
    search = constrained(chat("Find the height of the Eiffel tower.", max_tokens=80), ToolCalls((SEARCH,), "required", parallel=False), c)
    jobs = [RecordingJob(ping), RecordingJob(search), RecordingJob(chat("Name three colors.", max_tokens=16))]
    run(engine, jobs)
    assert engine.tool_format.parse(jobs[0].text(), "required").calls == [("ping", "{}")]
    assert jobs[0].finished().reason == "stop" and jobs[0].text().count("<tool_call>") == 1
    assert [n for n, _ in engine.tool_format.parse(jobs[1].text(), "required").calls] == ["search"]
    assert jobs[2].text() == solo(engine, chat("Name three colors.", max_tokens=16)).text()


def test_n_sampled_choices_each_follow_the_schema_with_raw_logprobs(engine):
    request = constrained(chat("Describe a person.", max_tokens=60, n=3, temperature=1.0, seed=3, logprobs=True, top_logprobs=2),
                          JsonSchema(PERSON, strict=True, param="response_format"), engine.constraint_compiler)
    job = RecordingJob(request)
    run(engine, [job])
    assert job.failed is None
    for i in range(3):
        jsonschema.validate(json.loads(job.text(i)), PERSON)
        entries = job.logprobs(i)
        assert "".join(e.token for e in entries) == job.text(i)
        # logprobs are of the model's own distribution, before the mask: never -inf, and the most
        # likely alternatives need not be allowed tokens
        assert all(e.logprob > float("-inf") and len(e.top) == 2 for e in entries)
    first = [job.logprobs(i)[0] for i in range(3)]  # the shared first row: the same distribution for each
    assert all(f.top == first[0].top for f in first)


def test_a_grammar_constraint_on_a_completion(engine):
    job = solo(engine, constrained(completion("Q: what is six times seven?\nA:", max_tokens=20),
                                   Grammar(LARK, "lark", "guided_grammar"), engine.constraint_compiler))
    assert re.fullmatch(r"The answer is [1-9][0-9]?\.", job.text()) and job.finished().reason == "stop"


def test_a_constraint_failing_mid_answer_fails_only_its_job(engine, smollm2_tokenizer):
    """A lexer state limit hit while generating: that job gets the 400, the others carry on."""
    tight = ConstraintCompiler(smollm2_tokenizer, n_vocab=engine.constraint_compiler.n_vocab,
                               tool_format=engine.tool_format, limits=CompileLimits(max_lexer_states=50))
    doomed = constrained(completion("Letters: ", max_tokens=200), Regex("(a|b|c|d)*a(a|b|c|d){12}", "guided_regex"), tight)
    others = [chat("Tell me about cats.", max_tokens=30), chat("Describe Paris.", max_tokens=30)]
    expected = [solo(engine, r).text() for r in others]
    jobs = [RecordingJob(doomed)] + [RecordingJob(r) for r in others]
    run(engine, jobs)
    assert isinstance(jobs[0].failed, ConstraintFailed) and jobs[0].failed.param == "guided_regex"
    assert [j.text() for j in jobs[1:]] == expected
    assert engine.active() == 0 and engine.free_slots() == 8


def test_an_unprepared_constraint_is_a_programming_error(engine):
    job = RecordingJob(dataclasses.replace(completion("x", max_tokens=4), constraint=AnyJsonObject("response_format")))
    run(engine, [job])
    assert isinstance(job.failed, InternalError)
