"""Admin for tiers (live status, warm/unload, validated form) and for the response cache.

The admin runs inside the serving process, so the manager it asks is the one serving requests.
"""

from __future__ import annotations

import json
import logging
import time

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.utils.html import format_html

from inference.manager import get_manager
from inference.status import TierStatus

from .models import ApiKey, ApiKeyUsage, CachedResponse, StoredResponse, Tier
from .selectors import tier_spec
from .services import api_key_issue, api_key_revoke, cached_response_clear
from .signals import CacheClearIncomplete
from .tier_form import option_fieldnames, tier_form

logger = logging.getLogger(__name__)

# Admin views run on Django's one sync thread: wait a little for the load, never for long.
WARM_WAIT_SECONDS = 5


def pretty_json(value) -> str:
    """A JSON field as the admin shows it: indented, in a <pre>."""
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, ensure_ascii=False))


def _ago(timestamp: float | None) -> str:
    if timestamp is None:
        return "never"
    seconds = int(time.time() - timestamp)
    return f"{seconds}s ago" if seconds < 120 else f"{seconds // 60} min ago"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds}s" if seconds < 120 else f"{seconds // 60} min {seconds % 60:02d}s"


@admin.register(Tier)
class TierAdmin(admin.ModelAdmin):
    list_display = (
        "name", "kind", "backend", "enabled", "cache_enabled", "state", "load_time", "activity", "kv_cache",
        "requests_served", "last_used", "unloads_in", "model_path",
    )
    list_filter = ("kind", "backend", "enabled", "cache_enabled")
    search_fields = ("name", "aliases", "model_path")
    actions = ("warm", "unload", "clear_cache")
    fieldsets = (
        (None, {"fields": ("name", "aliases", "kind", "backend", "model_path", "enabled", "cache_enabled", "description")}),
        ("Default sampling (used only when a request omits the field)", {"fields": Tier.SAMPLING_FIELDS}),
        ("Admission (empty: QUEUE_MAX_WAITING / QUEUE_MAX_WAIT_SECONDS)", {"fields": Tier.ADMISSION_FIELDS}),
        ("Idle unload (empty: KEEP_ALIVE / KEEP_ALIVE_MAX)", {"fields": Tier.KEEP_ALIVE_FIELDS}),
    )

    # --- the form: the load options of the tier's backend (registry/tier_form.py) -------------------
    def _form_class(self, request, obj):
        """The form for the backend and kind being posted, else the tier's, else the defaults."""
        defaults = {f: Tier._meta.get_field(f).get_default() for f in ("backend", "kind")}
        source = request.POST if request.method == "POST" else {}
        backend = source.get("backend") or (obj.backend if obj else defaults["backend"])
        kind = source.get("kind") or (obj.kind if obj else defaults["kind"])
        return tier_form(backend, kind), backend

    def get_form(self, request, obj=None, change=False, **kwargs):
        kwargs["form"] = self._form_class(request, obj)[0]
        return super().get_form(request, obj, change, **kwargs)

    def get_fieldsets(self, request, obj=None):
        form, backend = self._form_class(request, obj)
        options = option_fieldnames(form)
        if not options:
            return self.fieldsets
        title = f"Load options of the {backend} backend (empty: the global setting or the default)"
        return (self.fieldsets[0], (title, {"fields": options}), *self.fieldsets[1:])

    # --- live status (inference.status.TierStatus) ---------------------------------------------------
    def changelist_view(self, request, extra_context=None):
        self._status = get_manager().status()  # one snapshot per page, not one per column
        return super().changelist_view(request, extra_context)

    def _worker(self, tier: Tier) -> TierStatus:
        return getattr(self, "_status", {}).get(tier.name) or TierStatus.unloaded(tier.name, tier.backend, tier.kind)

    @admin.display(description="State")
    def state(self, tier: Tier) -> str:
        status = self._worker(tier)
        state = status.state
        colour = {"ready": "#1a7f37", "failed": "#cf222e", "loading": "#9a6700", "retiring": "#9a6700"}.get(state, "#6e7781")
        if state == "failed":  # why, and when the next load attempt is
            retry = f"; next attempt in {max(0, int(status.retry_at - time.time()))}s" if status.retry_at else ""
            return format_html('<span class="tier-state" data-state="{}" style="color:{}" title="{}">{} ({}{})</span>',
                               state, colour, status.error or "", state, status.error or "", retry)
        return format_html('<span class="tier-state" data-state="{}" style="color:{}">{}</span>', state, colour, state)

    @admin.display(description="Load time")
    def load_time(self, tier: Tier) -> str:
        status = self._worker(tier)
        return f"{status.load_seconds:.2f}s" if status.load_seconds is not None else "-"

    @admin.display(description="Running / queued")
    def activity(self, tier: Tier) -> str:
        status = self._worker(tier)
        slots = f" of {status.slots}" if status.slots else ""
        return f"{status.running}{slots} / {status.queued}"

    @admin.display(description="KV cache")
    def kv_cache(self, tier: Tier) -> str:
        usage = self._worker(tier).kv_cache_usage
        return "-" if usage is None else f"{usage:.0%}"

    @admin.display(description="Requests")
    def requests_served(self, tier: Tier) -> int:
        return self._worker(tier).requests

    @admin.display(description="Last used")
    def last_used(self, tier: Tier) -> str:
        return _ago(self._worker(tier).last_used)

    @admin.display(description="Unloads in")
    def unloads_in(self, tier: Tier) -> str:
        """The keep_alive countdown: when the idle model unloads (busy or never: why not)."""
        status = self._worker(tier)
        if not status.loaded:
            return "-"
        if status.unload_in is not None:
            return _duration(status.unload_in)
        return "never" if status.keep_alive is None else "when idle"

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
        deleted = cleared(self, request, [{"tier": tier.name} for tier in queryset])
        if deleted is not None:
            self.message_user(request, f"Deleted {deleted} cached responses.")


def cleared(model_admin: admin.ModelAdmin, request, clears: list[dict]) -> int | None:
    """`cached_response_clear(**each)` for each of `clears`: how many rows went, or None once one
    could not clear the shared front (Redis unreachable), said to the user as an error."""
    deleted = 0
    for kwargs in clears:
        try:
            deleted += cached_response_clear(**kwargs)
        except CacheClearIncomplete as exc:
            model_admin.message_user(request, f"Deleted {deleted + exc.deleted} cached responses from the database, "
                                              f"but {exc}", level=messages.ERROR)
            return None
    return deleted


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
        return pretty_json(entry.request)

    @admin.display(description="Response")
    def response_pretty(self, entry: CachedResponse) -> str:
        return pretty_json(entry.response)

    def delete_model(self, request, obj):
        cleared(self, request, [{"keys": [obj.key]}])

    def delete_queryset(self, request, queryset):
        cleared(self, request, [{"keys": list(queryset.values_list("key", flat=True))}])

    @admin.action(description="Clear all expired entries")
    def clear_expired(self, request, queryset):
        deleted = cleared(self, request, [{"expired_only": True}])
        if deleted is not None:
            self.message_user(request, f"Deleted {deleted} expired entries.")

    @admin.action(description="Clear every entry of the selected entries' tiers")
    def clear_tiers(self, request, queryset):
        names = set(queryset.values_list("tier__name", flat=True))
        deleted = cleared(self, request, [{"tier": name} for name in sorted(names)])
        if deleted is not None:
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


# --- Stored responses (issue 14: the Responses API) -----------------------------------------------
@admin.register(StoredResponse)
class StoredResponseAdmin(admin.ModelAdmin):
    """Responses kept for GET /v1/responses/{id} and previous_response_id: view and delete only."""

    list_display = ("response_id", "tier", "status", "api_key", "created_at", "expires_at")
    list_filter = ("tier", "status")
    search_fields = ("response_id",)
    date_hierarchy = "created_at"
    readonly_fields = ("response_id", "tier", "status", "api_key", "created_at", "expires_at", "input_pretty", "response_pretty")
    exclude = ("input_items", "response")

    def has_add_permission(self, request) -> bool:
        return False  # made by requests, never by hand

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Input items")
    def input_pretty(self, entry: StoredResponse) -> str:
        return pretty_json(entry.input_items)

    @admin.display(description="Response")
    def response_pretty(self, entry: StoredResponse) -> str:
        return pretty_json(entry.response)
