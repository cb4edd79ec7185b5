"""The registry of backends: `settings.INFERENCE_BACKENDS` maps a tier's `backend` to its engines.

A name maps to one engine class (a dotted path) or to several (a list), each declaring the tier
kinds it serves (the engine contract, inference/engines/base.py); a tier runs on the first engine
of its backend that serves its kind, with that engine's load options.
"""

from __future__ import annotations

from django.conf import settings
from django.utils.module_loading import import_string

from llmservice.errors import ModelUnavailable

from ..engines.base import Engine
from ..options import options_problems
from ..params import ModelSpec

__all__ = ["backend_engines", "backend_kinds", "backend_names", "engine_class", "engine_problems"]

UNKNOWN_BACKEND = "Unknown backend '{backend}' (one of: {known})."
NOT_INSTALLED = "Backend '{backend}' is not installed: {error}."
NOT_AN_ENGINE = "Backend '{backend}': {path} does not implement the engine contract (kinds, options, load, step)."
WRONG_KIND = "Backend '{backend}' does not serve {kind} tiers (it serves: {kinds})."
ENGINE_ATTRIBUTES = ("kinds", "options", "check", "load", "free_slots", "admit", "step", "abort", "active", "stats", "close")


def backend_names() -> list[str]:
    return list(settings.INFERENCE_BACKENDS)


def backend_engines(name: str) -> list[type[Engine]]:
    """The engine classes registered for `name`; ModelUnavailable if unknown or not importable."""
    try:
        entry = settings.INFERENCE_BACKENDS[name]
    except KeyError:
        raise ModelUnavailable(UNKNOWN_BACKEND.format(backend=name, known=", ".join(backend_names()))) from None
    engines = []
    for path in [entry] if isinstance(entry, str) else entry:
        try:
            engine = import_string(path)
        except ImportError as exc:
            raise ModelUnavailable(NOT_INSTALLED.format(backend=name, error=exc)) from exc
        if not all(hasattr(engine, attribute) for attribute in ENGINE_ATTRIBUTES):
            raise ModelUnavailable(NOT_AN_ENGINE.format(backend=name, path=path))
        engines.append(engine)
    return engines


def backend_kinds(name: str) -> frozenset[str]:
    """The tier kinds backend `name` serves."""
    return frozenset().union(*(engine.kinds for engine in backend_engines(name)))


def engine_class(backend: str, kind: str) -> type[Engine]:
    """The engine that serves `kind` tiers of `backend`; ModelUnavailable if there is none."""
    engines = backend_engines(backend)
    for engine in engines:
        if kind in engine.kinds:
            return engine
    kinds = ", ".join(sorted(frozenset().union(*(e.kinds for e in engines))))
    raise ModelUnavailable(WRONG_KIND.format(backend=backend, kind=kind, kinds=kinds))


def engine_problems(spec: ModelSpec) -> list[str]:
    """What would stop `spec` from loading: no engine for its backend and kind, invalid options,
    or what the engine's own check finds (a missing file, ...); [] if nothing."""
    try:
        engine = engine_class(spec.backend, spec.kind)
    except ModelUnavailable as exc:
        return [exc.message.rstrip(".")]
    return options_problems(engine.options, spec.load) + engine.check(spec)
