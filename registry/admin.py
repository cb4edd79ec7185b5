"""Admin for tiers: every parameter editable, the model file checked before saving."""

from __future__ import annotations

from django import forms
from django.contrib import admin

from inference.backends.llamacpp import CHAT_FORMATS

from .models import Tier
from .selectors import tier_problems


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


@admin.register(Tier)
class TierAdmin(admin.ModelAdmin):
    form = TierForm
    list_display = ("name", "kind", "backend", "enabled", "model_path", "updated_at")
    list_filter = ("kind", "backend", "enabled")
    search_fields = ("name", "aliases", "model_path")
    fieldsets = (
        (None, {"fields": ("name", "aliases", "kind", "backend", "model_path", "enabled", "description")}),
        ("Load parameters (empty: the global setting)", {"fields": Tier.LOAD_FIELDS}),
        ("Default sampling (used only when a request omits the field)", {"fields": Tier.SAMPLING_FIELDS}),
    )
