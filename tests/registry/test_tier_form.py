"""The admin's tier form on its own: model fields, the backend's load options, per-field errors."""

import pytest

from registry.tier_form import tier_form

pytestmark = pytest.mark.django_db


def form(backend="llamacpp", kind="chat", **data):
    base = {"name": "medium", "kind": kind, "backend": backend, "model_path": "", "enabled": True, "stop": "[]"}
    return tier_form(backend, kind)(data={**base, **data})


def test_form_refuses_a_missing_model_file(tmp_path):
    f = form(model_path=str(tmp_path / "nope.gguf"))
    assert not f.is_valid()
    assert "model file not found" in f.errors["model_path"][0]


def test_form_accepts_the_bundled_model(smollm2_path):
    f = form(model_path=smollm2_path, temperature="0.4")
    assert f.is_valid(), f.errors
    assert f.save().temperature == 0.4


def test_form_refuses_out_of_range_parameters(smollm2_path):
    f = form(model_path=smollm2_path, temperature="7", top_p="2")
    assert not f.is_valid()
    assert {"temperature", "top_p"} <= set(f.errors)


def test_form_refuses_stop_that_is_not_a_list_of_strings(smollm2_path):
    assert "stop" in form(model_path=smollm2_path, stop='"END"').errors


# --- load options ----------------------------------------------------------------------------------
def test_the_backends_options_are_fields_and_only_the_set_ones_are_stored(smollm2_path):
    f = form(model_path=smollm2_path, opt_n_ctx="4096", opt_n_threads="", opt_chat_format="chatml")
    assert f.is_valid(), f.errors
    assert f.save().options == {"n_ctx": 4096, "chat_format": "chatml"}


def test_each_invalid_option_is_reported_on_its_own_field(smollm2_path):
    f = form(model_path=smollm2_path, opt_n_ctx="8", opt_n_gpu_layers="-2", opt_n_batch="many", opt_chat_format="nope")
    assert not f.is_valid()
    assert set(f.errors) == {"opt_n_ctx", "opt_n_gpu_layers", "opt_n_batch", "opt_chat_format"}
    assert "greater than or equal to 16" in f.errors["opt_n_ctx"][0]  # pydantic's message, on its field
    assert "greater than or equal to -1" in f.errors["opt_n_gpu_layers"][0]


def test_an_option_field_says_what_empty_means(settings):
    settings.N_CTX = 3072
    fields = form().fields
    assert "N_CTX" in fields["opt_n_ctx"].help_text and "3072" in fields["opt_n_ctx"].help_text
    assert "Context window" in fields["opt_n_ctx"].help_text


def test_an_embedding_backend_has_its_own_options(minilm_path):
    f = form(backend="sentence_transformers", kind="embedding", model_path=minilm_path, opt_batch_items="0")
    assert "opt_n_ctx" not in f.fields
    assert not f.is_valid() and "greater than or equal to 1" in f.errors["opt_batch_items"][0]
    f = form(backend="sentence_transformers", kind="embedding", model_path=minilm_path, opt_batch_items="32")
    assert f.is_valid(), f.errors
    assert f.save().options == {"batch_items": 32}


def test_the_backend_must_be_registered_and_serve_the_tiers_kind(smollm2_path):
    f = form(backend="vllm", model_path=smollm2_path)
    assert not f.is_valid() and "valid choice" in f.errors["backend"][0]
    f = form(backend="sentence_transformers", kind="chat", model_path=smollm2_path)
    assert not f.is_valid()
    assert f.errors["backend"] == ["Backend 'sentence_transformers' does not serve chat tiers (it serves: embedding)."]
