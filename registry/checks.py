"""System checks (`manage.py check`): tiers whose model can't load are reported, not crashed on."""

from __future__ import annotations

from django.core.checks import Warning, register
from django.db import DatabaseError


@register()
def tier_models_loadable(app_configs=None, **kwargs):
    """registry.W002: a tier's backend is not in INFERENCE_BACKENDS (or has no engine for its kind);
    registry.W001: anything else that would stop its model from loading."""
    from django.conf import settings

    from inference.backends import engine_class
    from llmservice.errors import ModelUnavailable

    from .models import Tier
    from .selectors import tier_problems

    try:
        tiers = list(Tier.objects.filter(enabled=True))
    except DatabaseError:  # not migrated yet: nothing to check
        return []
    warnings = []
    for tier in tiers:
        try:
            engine_class(tier.backend, tier.kind)
        except ModelUnavailable as exc:
            warnings.append(
                Warning(
                    f"Tier '{tier.name}': {exc.message}",
                    hint=f"Choose one of {', '.join(settings.INFERENCE_BACKENDS)} in the admin, or register the "
                    "backend in settings.INFERENCE_BACKENDS.",
                    obj=tier,
                    id="registry.W002",
                )
            )
            continue
        if problems := tier_problems(tier=tier):
            warnings.append(
                Warning(
                    f"Tier '{tier.name}' cannot be loaded: {'; '.join(problems)}.",
                    hint="Fix its model path or options in the admin or the environment (then `manage.py sync_tiers --force`).",
                    obj=tier,
                    id="registry.W001",
                )
            )
    return warnings


CACHE_POLICIES = ("deterministic", "all", "none")


@register()
def cache_and_channel_settings(app_configs=None, **kwargs):
    """Invalid cache or channel-layer settings are reported by `manage.py check` and at start-up."""
    from django.conf import settings
    from django.core.checks import Error

    errors = []
    if settings.CACHE_REQUESTS not in CACHE_POLICIES:
        errors.append(
            Error(f"CACHE_REQUESTS={settings.CACHE_REQUESTS!r} is not one of {', '.join(CACHE_POLICIES)}.", id="registry.E001")
        )
    if settings.CACHE_MAX_SIZE < 0 or settings.CACHE_TTL_SECONDS <= 0:
        errors.append(Error("CACHE_MAX_SIZE must be >= 0 and CACHE_TTL_SECONDS > 0.", id="registry.E002"))
    if settings.REDIS_URL:
        try:
            import channels_redis  # noqa: F401
        except ImportError:
            errors.append(
                Error("REDIS_URL is set but channels-redis is not installed.", hint="pip install channels-redis", id="registry.E003")
            )
    return errors


# --- Security (issue 11) ----------------------------------------------------------------------------
def is_loopback(host: str) -> bool:
    """Whether `host` (a bind address) is reachable from this machine only."""
    import ipaddress

    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@register("security")
def secret_key_not_public(app_configs=None, **kwargs):
    """The SECRET_KEY that `.env.example` once shipped is public: refused off loopback, warned on it."""
    from django.conf import settings
    from django.core.checks import Error

    from llmservice.secret import OLD_DEFAULT_SECRET_KEY

    if settings.SECRET_KEY != OLD_DEFAULT_SECRET_KEY:
        return []
    hint = "Remove SECRET_KEY from .env: a random key is generated into SECRET_KEY_FILE on first start."
    if is_loopback(settings.HOST):
        return [Warning("SECRET_KEY is the public default of an old .env.example.", hint=hint, id="registry.W010")]
    return [
        Error(f"SECRET_KEY is the public default of an old .env.example and HOST={settings.HOST} is reachable.",
              hint=hint, id="registry.E010")
    ]
