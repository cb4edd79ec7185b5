from inference.params import ENGINE_DEFAULTS, ModelSpec, resolve_sampling


def test_request_value_wins_over_tier_default():
    params = resolve_sampling({"temperature": 0.2}, {"temperature": 0.9})
    assert params.temperature == 0.2


def test_tier_default_applies_only_when_request_omits_field():
    params = resolve_sampling({"temperature": None, "top_p": 0.5}, {"temperature": 0.9, "top_p": 0.1})
    assert params.temperature == 0.9
    assert params.top_p == 0.5


def test_engine_default_when_neither_sets_it():
    params = resolve_sampling({}, {})
    assert params.temperature == ENGINE_DEFAULTS["temperature"] == 1.0
    assert params.max_tokens is None
    assert params.stop == ()


def test_zero_is_a_value_not_an_omission():
    params = resolve_sampling({"temperature": 0.0, "presence_penalty": 0.0}, {"temperature": 0.7, "presence_penalty": 1.0})
    assert params.temperature == 0.0
    assert params.presence_penalty == 0.0


def test_stop_default_and_override():
    assert resolve_sampling({}, {"stop": ["\n\n"]}).stop == ("\n\n",)
    assert resolve_sampling({"stop": ["END"]}, {"stop": ["\n\n"]}).stop == ("END",)


def test_request_only_fields_never_come_from_tier():
    params = resolve_sampling({"seed": 7, "logprobs": True, "top_logprobs": 3}, {"seed": 1})
    assert (params.seed, params.logprobs, params.top_logprobs) == (7, True, 3)


def _spec(**changes):
    base = dict(name="t", backend="llamacpp", kind="chat", model_path="/m.gguf", load={"n_ctx": 512}, defaults={})
    return ModelSpec(**{**base, **changes})


def test_load_key_changes_only_with_load_configuration():
    assert _spec().load_key == _spec(defaults={"temperature": 0.1}).load_key
    assert _spec().load_key != _spec(load={"n_ctx": 1024}).load_key
    assert _spec().load_key != _spec(model_path="/other.gguf").load_key


def test_config_key_changes_with_sampling_defaults():
    assert _spec().config_key != _spec(defaults={"temperature": 0.1}).config_key


def test_one_table_drives_schemas_tier_defaults_and_env_example():
    """Each sampling knob is a row of SAMPLING_TABLE: a request field (bounded as the row says) on
    chat and completions, a tier column for its soft default, and a line in .env.example."""
    from pathlib import Path

    from inference.params import SAMPLING_TABLE
    from openai_api.schemas.chat import ChatCompletionRequest
    from openai_api.schemas.completions import CompletionRequest
    from registry.models import Tier

    env_example = (Path(__file__).resolve().parents[2] / ".env.example").read_text()
    assert Tier.SAMPLING_FIELDS == tuple(f.name for f in SAMPLING_TABLE)
    for row in SAMPLING_TABLE:
        Tier._meta.get_field(row.name)
        assert f"# LIGHT_{row.name.upper()}=" in env_example, row.name
        for schema in (ChatCompletionRequest, CompletionRequest):
            assert row.name in schema.model_fields, (schema.__name__, row.name)
            if row.ge is not None and row.name not in ("max_tokens",):
                bounds = schema.model_json_schema()["properties"][row.name]["anyOf"][0]
                assert bounds.get("minimum") == row.ge and bounds.get("maximum") == row.le, row.name
