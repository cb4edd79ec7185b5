import pytest

from registry.admin import TierForm

pytestmark = pytest.mark.django_db


def form(**data):
    base = {"name": "medium", "kind": "chat", "backend": "llamacpp", "model_path": "", "enabled": True, "stop": "[]"}
    return TierForm(data={**base, **data})


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
