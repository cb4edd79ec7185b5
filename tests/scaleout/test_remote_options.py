"""A remote tier's options in the admin's form and the seed from the environment; the breaker."""

import pytest

from inference.remote import UpstreamHealth
from registry.services import tier_env_options
from registry.tier_form import tier_form


def form(**data):
    base = {"name": "big", "kind": "chat", "backend": "remote", "model_path": "meta-llama/Llama-3.1-70B",
            "enabled": True, "stop": "[]"}
    return tier_form("remote", "chat")(data={**base, **data})


@pytest.mark.django_db
def test_form_stores_the_key_variable_name_never_a_key(monkeypatch):
    monkeypatch.setenv("VLLM_API_KEY", "sk-secret")
    f = form(opt_base_url="http://vllm:8000/v1", opt_api_key_env="VLLM_API_KEY", opt_trust_json_schema="false")
    assert f.is_valid(), f.errors
    assert f.save().options == {"base_url": "http://vllm:8000/v1", "api_key_env": "VLLM_API_KEY",
                                "trust_json_schema": False}


@pytest.mark.django_db
def test_form_refuses_a_bad_url_an_unset_variable_and_bad_numbers(monkeypatch):
    monkeypatch.delenv("NOPE_KEY", raising=False)
    f = form(opt_base_url="vllm:8000", opt_api_key_env="NOPE_KEY", opt_read_timeout="0")
    assert not f.is_valid()
    assert "opt_read_timeout" in f.errors
    f = form(opt_base_url="vllm:8000", opt_api_key_env="NOPE_KEY")
    assert not f.is_valid()
    problems = " ".join(f.errors["model_path"])
    assert "is not an http(s) URL" in problems and "NOPE_KEY is not set" in problems


def test_env_seeds_remote_options():
    env = {"BIG_BASE_URL": "http://vllm:8000/v1", "BIG_RETRIES": "0", "BIG_TRUST_JSON_SCHEMA": "false"}
    assert tier_env_options(name="big", backend="remote", kind="chat", environ=env) == {
        "base_url": "http://vllm:8000/v1", "retries": 0, "trust_json_schema": False}


def test_breaker_opens_after_failures_and_half_opens():
    health = UpstreamHealth()
    assert health.admit("big", reset_seconds=60) is None
    health.failed("big", "boom", threshold=2)
    assert health.admit("big", reset_seconds=60) is None  # one failure: still up
    health.failed("big", "boom", threshold=2)
    assert health.admit("big", reset_seconds=60) == "boom"
    assert health.statuses()["big"].upstream == "down"
    assert health.admit("big", reset_seconds=0) is None  # half-open: one trial
    assert health.admit("big", reset_seconds=0) == "boom"  # ... and only one
    health.succeeded("big")
    assert health.statuses()["big"].upstream == "up"
