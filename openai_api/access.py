"""Who may call /v1: API keys (when API_KEYS_REQUIRED is on), their scope and their rate limits.

- `ApiKeyAuth` (the /v1 API's django-ninja auth): `Authorization: Bearer <key>`; missing, wrong,
  revoked or expired: 401. Per-key requests and tokens per minute: 429 with Retry-After.
- `authorized_tier()` resolves a request's `model` and refuses a tier outside the key's scope (403).
- The tokens a request uses are counted as they happen (`meter_tokens`) into the key's usage and
  its tokens-per-minute window; usage and last-used times reach the database through
  `openai_api/usage.py`, at most once a minute, never per token.
With keys off, every request is anonymous and none of this counts anything.
https://platform.openai.com/docs/api-reference/authentication
"""

from __future__ import annotations

from contextvars import ContextVar
import math
from dataclasses import dataclass

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone
from ninja.security import HttpBearer

from llmservice.errors import PermissionDenied, RateLimited, Unauthorized
from registry.models import Tier
from inference.params import ModelSpec
from registry.selectors import ApiKeyInfo, api_key_find
from registry.tier_snapshot import tier_lookup

from .ratelimit import get_rate_limiter
from .request_record import note_api_key
from .usage import usage_buffer

MISSING_KEY = "You didn't provide an API key. Send it in the header 'Authorization: Bearer <key>'."
WRONG_KEY = "Incorrect API key provided: {shown}."
REVOKED_KEY = "The API key '{prefix}...' has been revoked."
EXPIRED_KEY = "The API key '{prefix}...' expired at {when:%Y-%m-%d %H:%M} UTC."
NOT_IN_SCOPE = "The API key '{name}' may not use the model '{model}'."
REQUESTS_LIMITED = "Rate limit reached for API key '{name}' on requests per minute: limit {limit}. Retry after {retry} s."
TOKENS_LIMITED = "Rate limit reached for API key '{name}' on tokens per minute: limit {limit}. Retry after {retry} s."
MINUTE = 60.0


@dataclass
class Meter:
    """One request's key and tier, which its token counts are charged to."""

    key: ApiKeyInfo
    tier: str | None = None


# Set by the auth step for the rest of the request's task (streamed bodies included).
current_meter: ContextVar[Meter | None] = ContextVar("current_meter", default=None)


class Anonymous:
    """The caller when API keys are off: may use every tier, counted nowhere."""

    key = None

    def __bool__(self) -> bool:  # django-ninja treats a falsy auth result as "not authenticated"
        return True


ANONYMOUS = Anonymous()


def _bearer(request: HttpRequest) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def _shown(secret: str) -> str:
    """A wrong key is echoed the way OpenAI does: enough to recognise, not enough to reuse."""
    return f"{secret[:7]}...{secret[-4:]}" if len(secret) > 14 else "***"


class ApiKeyAuth(HttpBearer):
    """django-ninja auth for /v1: the caller's key (as a Meter), or ANONYMOUS with keys off.
    (A bearer scheme, so the OpenAPI document declares it.)"""

    def authenticate(self, request: HttpRequest, token: str):  # pragma: no cover - __call__ does it all
        raise NotImplementedError

    async def __call__(self, request: HttpRequest):
        if not settings.API_KEYS_REQUIRED:
            return ANONYMOUS
        secret = _bearer(request)
        if secret is None:
            raise Unauthorized(MISSING_KEY)
        key = await sync_to_async(api_key_find)(secret=secret)
        if key is None:
            raise Unauthorized(WRONG_KEY.format(shown=_shown(secret)))
        note_api_key(key.name)  # the access log's `api_key`, refused or not
        now = timezone.now()
        if key.revoked_at is not None:
            raise Unauthorized(REVOKED_KEY.format(prefix=key.prefix))
        if key.expires_at is not None and key.expires_at <= now:
            raise Unauthorized(EXPIRED_KEY.format(prefix=key.prefix, when=key.expires_at))
        await _check_rates(key)
        if key.last_used_at is None or (now - key.last_used_at).total_seconds() >= MINUTE:
            usage_buffer.touch(key.id, now)
        meter = Meter(key)
        current_meter.set(meter)
        return meter


async def _check_rates(key: ApiKeyInfo) -> None:
    limiter = get_rate_limiter()
    if key.tokens_per_minute is not None:
        wait = await limiter.wait_time(f"tpm:{key.id}", limit=key.tokens_per_minute, window=MINUTE)
        if wait:
            retry = max(1, math.ceil(wait))
            raise RateLimited(
                TOKENS_LIMITED.format(name=key.name, limit=key.tokens_per_minute, retry=retry), retry_after=wait, type="tokens"
            )
    if key.requests_per_minute is not None:
        wait = await limiter.acquire(f"rpm:{key.id}", limit=key.requests_per_minute, window=MINUTE)
        if wait:
            retry = max(1, math.ceil(wait))
            raise RateLimited(REQUESTS_LIMITED.format(name=key.name, limit=key.requests_per_minute, retry=retry), retry_after=wait)


def caller_allows(request: HttpRequest, tier: str) -> bool:
    """Whether the request's key (if any) may use `tier`."""
    meter = getattr(request, "auth", None)
    return not isinstance(meter, Meter) or meter.key.allows(tier)


async def visible_tier(request: HttpRequest, *, model: str) -> tuple[Tier, ModelSpec]:
    """The tier `model` names (404 if none) and its spec, if the caller's key may use it (403 otherwise)."""
    tier, spec = await tier_lookup(model=model)
    if not caller_allows(request, tier.name):
        raise PermissionDenied(NOT_IN_SCOPE.format(name=request.auth.key.name, model=model), param="model")
    return tier, spec


async def authorized_tier(request: HttpRequest, *, model: str) -> tuple[Tier, ModelSpec]:
    """`visible_tier` for a request that will use the tier: counted in the key's usage of it."""
    tier, spec = await visible_tier(request, model=model)
    meter = getattr(request, "auth", None)
    if isinstance(meter, Meter):
        meter.tier = tier.name
        usage_buffer.add(meter.key.id, tier.name, requests=1)
    return tier, spec


async def meter_tokens(*, prompt: int = 0, completion: int = 0) -> None:
    """Charge tokens to the current request's key: its usage, and its tokens-per-minute window."""
    meter = current_meter.get()
    if meter is None or meter.tier is None or not (prompt or completion):
        return
    usage_buffer.add(meter.key.id, meter.tier, prompt_tokens=prompt, completion_tokens=completion)
    if meter.key.tokens_per_minute is not None:
        await get_rate_limiter().record(f"tpm:{meter.key.id}", amount=prompt + completion, window=MINUTE)
