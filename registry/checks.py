"""System checks (`manage.py check`): tiers whose model can't load are reported, not crashed on."""

from __future__ import annotations

from django.core.checks import Warning, register
from django.db import DatabaseError


@register()
def tier_models_loadable(app_configs=None, **kwargs):
    from .models import Tier
    from .selectors import tier_problems

    try:
        tiers = list(Tier.objects.filter(enabled=True))
    except DatabaseError:  # not migrated yet: nothing to check
        return []
    return [
        Warning(
            f"Tier '{tier.name}' cannot be loaded: {'; '.join(problems)}.",
            hint="Fix its model path in the admin or the environment (then `manage.py sync_tiers --force`).",
            obj=tier,
            id="registry.W001",
        )
        for tier in tiers
        if (problems := tier_problems(tier=tier))
    ]
