"""Per-backend load options: one pydantic model per engine, stored as JSON on the tier.

A field may name the global setting that fills it when the tier leaves it unset (`N_CTX` fills a
llama.cpp tier's `n_ctx`), so global values still apply and the environment seeds tiers as before
(`<TIER>_<OPTION>`, e.g. `LIGHT_N_CTX`). The admin renders each field as a form field and reports
pydantic's errors per field (registry/tier_form.py).
https://docs.pydantic.dev/latest/concepts/fields/
"""

from __future__ import annotations

from typing import Any, Mapping, TypeVar

from django.conf import settings
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo

from llmservice.errors import ModelUnavailable

OptionsT = TypeVar("OptionsT", bound=BaseModel)


class EngineOptions(BaseModel):
    """Base of every engine's options. Keys another backend left behind are ignored (a tier whose
    backend changed keeps them until the admin next saves it)."""

    model_config = ConfigDict(extra="ignore", frozen=True)


def option(default: Any = None, *, setting: str | None = None, **kwargs: Any) -> Any:
    """A pydantic field; `setting` names the global setting that fills it when the tier leaves it unset."""
    return Field(default, json_schema_extra={"setting": setting} if setting else None, **kwargs)


def option_setting(info: FieldInfo) -> str | None:
    """The global setting that fills this option, if any."""
    extra = info.json_schema_extra
    return extra.get("setting") if isinstance(extra, dict) else None  # type: ignore[return-value]


def options_fill(options: type[BaseModel], stored: Mapping[str, Any]) -> dict[str, Any]:
    """The tier's own values (unset ones left out), with global settings filling the rest."""
    values = {name: value for name, value in stored.items() if value is not None and name in options.model_fields}
    for name, info in options.model_fields.items():
        setting = option_setting(info)
        if name not in values and setting and getattr(settings, setting, None) is not None:
            values[name] = getattr(settings, setting)
    return values


def options_resolve(options: type[BaseModel], stored: Mapping[str, Any]) -> dict[str, Any]:
    """Every option's value for loading: the tier's, else its global setting's, else the default.

    Invalid values are passed on as given: the engine's check reports them (a 503 naming them)."""
    values = options_fill(options, stored)
    try:
        return options.model_validate(values).model_dump(mode="json")
    except ValidationError:
        return values


def options_errors(options: type[BaseModel], values: Mapping[str, Any]) -> dict[str, list[str]]:
    """Per option, what is wrong with `values` ("" for errors about several fields); {} if valid."""
    try:
        options.model_validate(dict(values))
    except ValidationError as exc:
        errors: dict[str, list[str]] = {}
        for error in exc.errors(include_url=False):
            name = str(error["loc"][0]) if error["loc"] else ""
            errors.setdefault(name, []).append(error["msg"])
        return errors
    return {}


def options_problems(options: type[BaseModel], values: Mapping[str, Any]) -> list[str]:
    """`options_errors` as sentences for a check or a 503: "option n_ctx: Input should be ..."."""
    return [
        f"option {name}: {message}" if name else message
        for name, messages in options_errors(options, values).items()
        for message in messages
    ]


def options_load(options: type[OptionsT], spec: Any) -> OptionsT:
    """The engine's options for loading `spec`; ModelUnavailable (503) naming every invalid one."""
    try:
        return options.model_validate(dict(spec.load))
    except ValidationError:
        problems = options_problems(options, spec.load)
        raise ModelUnavailable(f"Model '{spec.name}' cannot be loaded: {'; '.join(problems)}.") from None
