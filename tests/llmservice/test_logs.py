"""Log lines: the request id on every record, plain and JSON formats (llmservice/logs.py)."""

import json
import logging

from llmservice.logs import JsonFormatter, RequestIdFilter, request_id_var


def record(msg="hello %s", args=("world",), **extra):
    rec = logging.LogRecord("inference.manager", logging.INFO, __file__, 1, msg, args, None)
    rec.__dict__.update(extra)
    return rec


def stamped(rec):
    assert RequestIdFilter().filter(rec) is True
    return rec


def test_the_filter_stamps_the_current_request_id():
    token = request_id_var.set("req-1")
    try:
        rec = stamped(record())
    finally:
        request_id_var.reset(token)
    assert (rec.request_id, rec.request_tag) == ("req-1", " [req-1]")
    outside = stamped(record())
    assert (outside.request_id, outside.request_tag) == ("", "")


def test_json_lines_carry_time_level_logger_message_and_request_id():
    token = request_id_var.set("req-2")
    try:
        line = json.loads(JsonFormatter().format(stamped(record())))
    finally:
        request_id_var.reset(token)
    assert line["message"] == "hello world"
    assert (line["level"], line["logger"], line["request_id"]) == ("INFO", "inference.manager", "req-2")
    assert line["time"].endswith("Z")


def test_an_access_record_puts_its_fields_at_the_top_level():
    fields = {"request_id": "r", "tier": "light", "status": 200, "prompt_tokens": 3, "cache": "MISS"}
    line = json.loads(JsonFormatter().format(stamped(record("x", (), access=fields))))
    assert line["message"] == "request"
    assert {k: line[k] for k in fields} == fields


def test_extra_fields_and_exceptions_are_kept():
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        rec = record(other="kept")
        rec.exc_info = sys.exc_info()
    line = json.loads(JsonFormatter().format(stamped(rec)))
    assert line["other"] == "kept"
    assert "ValueError: boom" in line["exception"]
