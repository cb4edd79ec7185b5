"""Admin for tiers (live status, warm/unload, validated form) and for the response cache.

The admin runs inside the serving process, so the manager it asks is the one serving requests.
"""

from __future__ import annotations

import json
import logging
import time

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.utils.html import format_html

from inference.backends.llamacpp import CHAT_FORMATS
from inference.manager import get_manager

from .models import ApiKey, ApiKeyUsage, CachedResponse, Tier
from .selectors import tier_problems, tier_spec
from .services import api_key_issue, api_key_revoke, cached_response_clear

logger = logging.getLogger(__name__)

# Admin views run on Django's one sync thread: wait a little for the load, never for long.
WARM_WAIT_SECONDS = 5


class TierForm(forms.ModelForm):
    chat_format = forms.ChoiceField(
        required=False,
        choices=[("", "From the GGUF (default)")] + [(f, f) for f in CHAT_FORMATS],
    )

    class Meta:
        model = Tier
        fields = "__all__"

    def clean(self):
        cleaned = super().clean()
        if not self.errors:
            candidate = Tier(**{f: cleaned.get(f) for f in ("name", "backend", "model_path", "chat_format", "kind")})
            for problem in tier_problems(tier=candidate):
                self.add_error("model_path", problem)
        return cleaned


def _ago(timestamp: float | None) -> str:
    if timestamp is None:
        return "never"
    seconds = int(time.time() - timestamp)
    return f"{seconds}s ago" if seconds < 120 else f"{seconds // 60} min ago"


@admin.register(Tier)
class TierAdmin(admin.ModelAdmin):
    form = TierForm
    list_display = (
        "name", "kind", "backend", "enabled", "cache_enabled", "state", "load_time", "requests_served", "last_used",
        "model_path",
    )
    list_filter = ("kind", "backend", "enabled", "cache_enabled")
    search_fields = ("name", "aliases", "model_path")
    actions = ("warm", "unload", "clear_cache")
    fieldsets = (
        (None, {"fields": ("name", "aliases", "kind", "backend", "model_path", "enabled", "cache_enabled", "description")}),
        ("Load parameters (empty: the global setting)", {"fields": Tier.LOAD_FIELDS}),
        ("Default sampling (used only when a request omits the field)", {"fields": Tier.SAMPLING_FIELDS}),
        ("Admission (empty: QUEUE_MAX_WAITING / QUEUE_MAX_WAIT_SECONDS)", {"fields": Tier.ADMISSION_FIELDS}),
    )

    def changelist_view(self, request, extra_context=None):
        self._status = get_manager().status()  # one snapshot per page, not one per column
        return super().changelist_view(request, extra_context)

    def _worker(self, tier: Tier):
        return getattr(self, "_status", {}).get(tier.name)

    @admin.display(description="State")
    def state(self, tier: Tier) -> str:
        status = self._worker(tier)
        state = status.state if status else "unloaded"
        colour = {"ready": "#1a7f37", "failed": "#cf222e", "loading": "#9a6700", "retiring": "#9a6700"}.get(state, "#6e7781")
        if status and state == "failed":  # why, and when the next load attempt is
            retry = f"; next attempt in {max(0, int(status.retry_at - time.time()))}s" if status.retry_at else ""
            return format_html('<span class="tier-state" data-state="{}" style="color:{}" title="{}">{} ({}{})</span>',
                               state, colour, status.error or "", state, status.error or "", retry)
        return format_html('<span class="tier-state" data-state="{}" style="color:{}">{}</span>', state, colour, state)

    @admin.display(description="Load time")
    def load_time(self, tier: Tier) -> str:
        status = self._worker(tier)
        return f"{status.load_seconds:.2f}s" if status and status.load_seconds is not None else "-"

    @admin.display(description="Requests")
    def requests_served(self, tier: Tier) -> int:
        status = self._worker(tier)
        return status.requests if status else 0

    @admin.display(description="Last used")
    def last_used(self, tier: Tier) -> str:
        status = self._worker(tier)
        return _ago(status.last_used if status else None)

    @admin.action(description="Warm (load now)")
    def warm(self, request, queryset):
        for tier in queryset:
            status = get_manager().warm(tier_spec(tier=tier), WARM_WAIT_SECONDS)
            if status.state == "failed":
                self.message_user(request, f"{tier.name}: {status.error}", messages.ERROR)
            elif status.state == "loading":
                self.message_user(request, f"{tier.name}: still loading; its state column will say when it is ready")
            else:
                self.message_user(request, f"{tier.name}: {status.state}, loaded in {status.load_seconds or 0:.2f}s")

    @admin.action(description="Unload (after in-flight requests finish)")
    def unload(self, request, queryset):
        for tier in queryset:
            done = get_manager().unload(tier.name)
            self.message_user(request, f"{tier.name}: {'unloaded' if done else 'was not loaded'}")

    @admin.action(description="Clear the response cache of these tiers")
    def clear_cache(self, request, queryset):
        deleted = sum(cached_response_clear(tier=tier.name) for tier in queryset)
        self.message_user(request, f"Deleted {deleted} cached responses.")


@admin.register(CachedResponse)
class CachedResponseAdmin(admin.ModelAdmin):
    list_display = ("key_short", "tier", "endpoint", "created_at", "expires_at", "hits", "size_bytes")
    list_filter = ("tier", "endpoint")
    search_fields = ("prompt_text",)
    date_hierarchy = "created_at"
    actions = ("clear_expired", "clear_tiers")
    readonly_fields = ("key", "tier", "endpoint", "config_key", "created_at", "expires_at", "hits", "size_bytes",
                       "request_pretty", "response_pretty")
    exclude = ("request", "response", "prompt_text")

    def has_add_permission(self, request) -> bool:
        return False  # entries are made by requests, never by hand

    def changelist_view(self, request, extra_context=None):
        # "Clear all expired entries" needs no selection: Django's action machinery wants one.
        if request.method == "POST" and request.POST.get("action") == "clear_expired":
            if not request.POST.getlist(ACTION_CHECKBOX_NAME):
                post = request.POST.copy()
                post.setlist(ACTION_CHECKBOX_NAME, ["0"])
                post["select_across"] = "1"
                request.POST = post
        return super().changelist_view(request, extra_context)

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Key")
    def key_short(self, entry: CachedResponse) -> str:
        return entry.key[:12]

    @admin.display(description="Request")
    def request_pretty(self, entry: CachedResponse) -> str:
        return format_html("<pre>{}</pre>", json.dumps(entry.request, indent=2, ensure_ascii=False))

    @admin.display(description="Response")
    def response_pretty(self, entry: CachedResponse) -> str:
        return format_html("<pre>{}</pre>", json.dumps(entry.response, indent=2, ensure_ascii=False))

    def delete_model(self, request, obj):
        cached_response_clear(keys=[obj.key])

    def delete_queryset(self, request, queryset):
        cached_response_clear(keys=list(queryset.values_list("key", flat=True)))

    @admin.action(description="Clear all expired entries")
    def clear_expired(self, request, queryset):
        self.message_user(request, f"Deleted {cached_response_clear(expired_only=True)} expired entries.")

    @admin.action(description="Clear every entry of the selected entries' tiers")
    def clear_tiers(self, request, queryset):
        names = set(queryset.values_list("tier__name", flat=True))
        deleted = sum(cached_response_clear(tier=name) for name in names)
        self.message_user(request, f"Deleted {deleted} entries of {', '.join(sorted(names))}.")


# --- API keys (issue 11) --------------------------------------------------------------------------
class ApiKeyUsageInline(admin.TabularInline):
    model = ApiKeyUsage
    extra = 0
    can_delete = False
    fields = readonly_fields = ("day", "tier", "requests", "prompt_tokens", "completion_tokens")

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are made here (the secret is shown once, in the confirmation message) and revoked
    with an action; only a hash is stored."""

    list_display = ("name", "prefix", "scope", "expires_at", "revoked_at", "last_used_at",
                    "requests_per_minute", "tokens_per_minute", "created_at")
    list_filter = ("revoked_at",)
    search_fields = ("name", "prefix")
    filter_horizontal = ("tiers",)
    fields = ("name", "tiers", "expires_at", "requests_per_minute", "tokens_per_minute",
              "prefix", "created_at", "last_used_at", "revoked_at")
    readonly_fields = ("prefix", "created_at", "last_used_at", "revoked_at")
    inlines = (ApiKeyUsageInline,)
    actions = ("revoke",)

    @admin.display(description="Tiers")
    def scope(self, key: ApiKey) -> str:
        return ", ".join(t.name for t in key.tiers.all()) or "all"

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        secret = api_key_issue(key=obj)
        self.message_user(
            request, f"The new key, shown only this once (only its hash is stored): {secret}", messages.WARNING
        )

    @admin.action(description="Revoke the selected keys")
    def revoke(self, request, queryset):
        for key in queryset:
            api_key_revoke(key=key)
        self.message_user(request, f"Revoked {queryset.count()} keys.")


@admin.register(ApiKeyUsage)
class ApiKeyUsageAdmin(admin.ModelAdmin):
    list_display = ("key", "tier", "day", "requests", "prompt_tokens", "completion_tokens")
    list_filter = ("tier", "day", "key")
    date_hierarchy = "day"

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
