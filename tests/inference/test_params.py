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
