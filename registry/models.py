"""Tiers: named model configurations that clients use as OpenAI `model` names."""

from __future__ import annotations

from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from inference.keep_alive import duration_parse
from inference.params import SAMPLING_TABLE


def validate_duration(value: str) -> None:
    """A keep_alive duration (inference/keep_alive.py)."""
    from django.core.exceptions import ValidationError

    try:
        duration_parse(value)
    except ValueError as exc:
        raise ValidationError(f"'{value}' {exc}.") from None


class Tier(models.Model):
    class Kind(models.TextChoices):
        CHAT = "chat", "Chat / completion model"
        EMBEDDING = "embedding", "Embedding model"
        RERANK = "rerank", "Reranker"

    name = models.SlugField(max_length=64, unique=True, help_text="The OpenAI `model` name clients use.")
    aliases = models.CharField(
        max_length=512, blank=True, help_text="Other names for this tier, comma-separated."
    )
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.CHAT)
    backend = models.CharField(
        max_length=32, default="llamacpp", help_text="One of the backends in settings.INFERENCE_BACKENDS."
    )
    model_path = models.CharField(max_length=1024, help_text="Path of the model file or directory.")
    enabled = models.BooleanField(default=True)
    description = models.CharField(max_length=255, blank=True)
    cache_enabled = models.BooleanField(
        default=True, help_text="Answer repeated requests from the response cache (when ENABLE_CACHE is on)."
    )

    # The backend's load options (inference/options.py): n_ctx, n_threads, ... for llama.cpp.
    # An option left out takes its global setting (N_CTX, ...), else the backend's default.
    options = models.JSONField(default=dict, blank=True, help_text="The backend's load options.")

    # Soft sampling defaults: used only when a request leaves the field out.
    temperature = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.0), MaxValueValidator(2.0)]
    )
    top_p = models.FloatField(null=True, blank=True, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)])
    top_k = models.IntegerField(null=True, blank=True, validators=[MinValueValidator(0)])
    min_p = models.FloatField(null=True, blank=True, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)])
    max_tokens = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)])
    repeat_penalty = models.FloatField(null=True, blank=True, validators=[MinValueValidator(0.0)])
    presence_penalty = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(-2.0), MaxValueValidator(2.0)]
    )
    frequency_penalty = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(-2.0), MaxValueValidator(2.0)]
    )
    stop = models.JSONField(default=list, blank=True, help_text='Default stop strings, a JSON list: ["\\n\\n"].')

    # Admission control (inference/admission.py): empty means QUEUE_MAX_WAITING / QUEUE_MAX_WAIT_SECONDS.
    max_waiting = models.PositiveIntegerField(
        null=True, blank=True, help_text="Most requests waiting to start (running ones not counted); more get a 429."
    )
    max_queue_wait_seconds = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0.0)],
        help_text="Longest a request may wait to start before it gets a 429.",
    )

    # Idle unload (inference/keep_alive.py): empty means KEEP_ALIVE / KEEP_ALIVE_MAX.
    keep_alive = models.CharField(
        max_length=32, blank=True, validators=[validate_duration],
        help_text='How long the model stays loaded after its last request: "30s", "5m", "1h" or seconds; '
        "0: unload right after each request; -1: never.",
    )
    keep_alive_max = models.CharField(
        max_length=32, blank=True, validators=[validate_duration],
        help_text="The longest keep_alive a request may ask for (a longer one is cut to this); -1: no bound.",
    )

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    SAMPLING_FIELDS = tuple(f.name for f in SAMPLING_TABLE)  # one column each (inference.params)
    ADMISSION_FIELDS = ("max_waiting", "max_queue_wait_seconds")
    KEEP_ALIVE_FIELDS = ("keep_alive", "keep_alive_max")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def alias_list(self) -> list[str]:
        return [a.strip() for a in self.aliases.split(",") if a.strip()]

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        errors: dict[str, str] = {}
        if not isinstance(self.stop, list) or not all(isinstance(s, str) for s in self.stop):
            errors["stop"] = "Stop must be a JSON list of strings."
        elif len(self.stop) > 4:
            errors["stop"] = "At most 4 stop strings (as OpenAI allows)."
        taken = {}
        for other in Tier.objects.exclude(pk=self.pk):
            taken[other.name] = other.name
            for alias in other.alias_list:
                taken[alias] = other.name
        for alias in self.alias_list:
            if alias == self.name:
                errors["aliases"] = f"'{alias}' is this tier's own name."
            elif alias in taken:
                errors["aliases"] = f"'{alias}' already names tier '{taken[alias]}'."
        if self.name in taken and taken[self.name] != self.name:
            errors["name"] = f"'{self.name}' is an alias of tier '{taken[self.name]}'."
        if errors:
            raise ValidationError(errors)


class CachedResponse(models.Model):
    """One cached answer: the normalized request, the response as a non-streaming JSON object.

    The key hashes the whole request with the tier's `config_key`, so an edited tier never
    matches entries made under its old configuration (they just expire).
    """

    class Endpoint(models.TextChoices):
        CHAT = "chat", "Chat completions"
        COMPLETIONS = "completions", "Completions"
        RESPONSES = "responses", "Responses"

    key = models.CharField(max_length=64, unique=True)
    tier = models.ForeignKey(Tier, on_delete=models.CASCADE, related_name="cached_responses")
    endpoint = models.CharField(max_length=16, choices=Endpoint.choices)
    config_key = models.CharField(max_length=32, help_text="The tier's configuration when this was made.")
    request = models.JSONField(help_text="The normalized request body.")
    response = models.JSONField(help_text="The response, as a non-streaming OpenAI object.")
    prompt_text = models.TextField(blank=True, help_text="The messages or prompt as text, for searching.")
    size_bytes = models.PositiveIntegerField(default=0)
    hits = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "cached response"

    def __str__(self) -> str:
        return f"{self.tier.name}/{self.endpoint} {self.key[:12]}"


# --- API keys (issue 11) ------------------------------------------------------------------------
class ApiKey(models.Model):
    """A client's key for /v1 when API_KEYS_REQUIRED is on. Only a SHA-256 of the key is stored:
    the key itself is shown once, when it is made (admin or `manage.py createapikey`)."""

    name = models.CharField(max_length=100, help_text="Who or what uses this key.")
    prefix = models.CharField(max_length=16, editable=False, help_text="The key's first characters, to recognise it.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    tiers = models.ManyToManyField(
        Tier, blank=True, related_name="api_keys", help_text="The tiers this key may use; none selected: every tier."
    )
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never expires.")
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    requests_per_minute = models.PositiveIntegerField(null=True, blank=True, help_text="Empty: no limit.")
    tokens_per_minute = models.PositiveIntegerField(
        null=True, blank=True, help_text="Prompt + completion tokens per minute; empty: no limit."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False, help_text="Updated at most once a minute.")

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}...)"


class ApiKeyUsage(models.Model):
    """Requests and tokens of one key on one tier on one day (UTC), written at most once a minute."""

    key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="usage")
    tier = models.CharField(max_length=64)
    day = models.DateField()
    requests = models.PositiveBigIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)

    class Meta:
        ordering = ["-day", "tier"]
        verbose_name = "API key usage"
        verbose_name_plural = "API key usage"
        constraints = [models.UniqueConstraint(fields=["key", "tier", "day"], name="one_usage_row_per_key_tier_day")]

    def __str__(self) -> str:
        return f"{self.key.name} {self.tier} {self.day}"


# --- Stored responses (issue 14: the Responses API) -----------------------------------------------
class StoredResponse(models.Model):
    """A /v1/responses answer kept for GET, DELETE and `previous_response_id` (`store`, default true).

    `input_items` is the whole conversation it answered (earlier turns resolved, `instructions`
    not included: they don't carry over); `response` is the response object as sent. Kept for
    RESPONSES_RETENTION_DAYS; with API keys on, only the key that made it sees it.
    """

    response_id = models.CharField(max_length=64, unique=True)
    tier = models.CharField(max_length=64)
    api_key = models.ForeignKey(
        ApiKey, null=True, blank=True, on_delete=models.CASCADE, related_name="stored_responses",
        help_text="The key that made it (empty: made with API keys off).",
    )
    status = models.CharField(max_length=16)
    input_items = models.JSONField(help_text="The conversation it answered, as Responses input items.")
    response = models.JSONField(help_text="The response object as sent.")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "stored response"

    def __str__(self) -> str:
        return self.response_id
