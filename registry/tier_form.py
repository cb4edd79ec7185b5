"""The admin's tier form: the model's fields, plus the load options of the tier's backend.

Each option of the backend's pydantic model (inference/options.py) becomes a form field named
`opt_<option>`; an empty field leaves the option unset (its global setting or default applies).
pydantic's errors are shown on their fields. The options are those of the backend and kind the
form was built for: after changing a tier's backend, save and edit the new backend's options.
"""

from __future__ import annotations

import types
from typing import Any, Literal, Union, get_args, get_origin

from django import forms
from django.conf import settings
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from inference.backends import backend_kinds, backend_names, engine_class
from inference.options import option_setting, options_errors, options_fill
from llmservice.errors import ModelUnavailable

from .models import Tier
from .selectors import tier_spec

OPTION_PREFIX = "opt_"
BOOLEAN_CHOICES = (("true", "on"), ("false", "off"))


def backend_choices() -> list[tuple[str, str]]:
    """Every registered backend, with the kinds it serves."""
    choices = []
    for name in backend_names():
        try:
            kinds = ", ".join(sorted(backend_kinds(name)))
        except ModelUnavailable:
            kinds = "not installed"
        choices.append((name, f"{name} ({kinds})"))
    return choices


class TierForm(forms.ModelForm):
    """A tier with the load options of one backend (`options_model`; None: the backend is unknown)."""

    options_model: type[BaseModel] | None = None
    backend = forms.ChoiceField(choices=backend_choices, help_text="One of the backends in settings.INFERENCE_BACKENDS.")

    class Meta:
        model = Tier
        exclude = ("options",)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if self.options_model is not None:
            stored = self.instance.options if isinstance(self.instance.options, dict) else {}
            for name in self.options_model.model_fields:
                value = stored.get(name)
                if isinstance(value, bool):
                    value = "true" if value else "false"
                self.initial.setdefault(OPTION_PREFIX + name, value)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        backend, kind = cleaned.get("backend"), cleaned.get("kind")
        if not backend or not kind:
            return cleaned
        try:
            engine = engine_class(backend, kind)
        except ModelUnavailable as exc:
            self.add_error("backend", exc.message)
            return cleaned
        if self.options_model is not engine.options:  # built for another backend: its options start unset
            self.instance.options = {}
        else:
            values = {n: cleaned.get(OPTION_PREFIX + n) for n in engine.options.model_fields}
            self.instance.options = {n: v for n, v in values.items() if v is not None}
            for name, messages in options_errors(engine.options, options_fill(engine.options, self.instance.options)).items():
                for message in messages:
                    self.add_error(OPTION_PREFIX + name if OPTION_PREFIX + name in self.fields else None, message)
        if not self.errors:
            candidate = Tier(**{f: cleaned.get(f) for f in ("name", "backend", "model_path", "kind")})
            candidate.options = self.instance.options
            for problem in engine.check(tier_spec(tier=candidate)):
                self.add_error("model_path", problem)
        return cleaned


def tier_form(backend: str, kind: str) -> type[TierForm]:
    """TierForm with a field per load option of the engine serving `kind` tiers of `backend`."""
    try:
        options = engine_class(backend, kind).options
    except ModelUnavailable:
        return TierForm
    fields = {OPTION_PREFIX + name: option_form_field(name, info) for name, info in options.model_fields.items()}
    return type("TierForm", (TierForm,), {**fields, "options_model": options})


def option_fieldnames(form: type[TierForm]) -> tuple[str, ...]:
    return tuple(OPTION_PREFIX + name for name in form.options_model.model_fields) if form.options_model else ()


def option_form_field(name: str, info: FieldInfo) -> forms.Field:
    """A form field for one option: its type, its description, and what an empty value means."""
    annotation = _without_none(info.annotation)
    help_text = " ".join(filter(None, [info.description, f"Empty: {_fallback(info)}."]))
    common = {"required": False, "label": name, "help_text": help_text}
    if get_origin(annotation) is Literal:
        choices = [("", "")] + [(v, v) for v in get_args(annotation)]
        return forms.TypedChoiceField(choices=choices, coerce=str, empty_value=None, **common)
    if annotation is bool:
        return forms.TypedChoiceField(
            choices=(("", ""), *BOOLEAN_CHOICES), coerce=lambda v: v == "true", empty_value=None, **common
        )
    if annotation is int:
        return forms.IntegerField(**common)
    if annotation is float:
        return forms.FloatField(**common)
    return forms.CharField(empty_value=None, **common)


def _without_none(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _fallback(info: FieldInfo) -> str:
    """What an unset option becomes."""
    setting = option_setting(info)
    if setting:
        return f"the global {setting} (now {getattr(settings, setting, None)!r})"
    if info.default is None:
        return "the backend's own choice"
    if isinstance(info.default, bool):
        return "on" if info.default else "off"
    return repr(info.default)
