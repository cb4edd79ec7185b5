"""`manage.py createapikey NAME [--tier T ...] [--expires-in-days N] [--rpm N] [--tpm N]`: a new
API key, printed once (only its hash is stored)."""

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from registry.models import Tier
from registry.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key (used when API_KEYS_REQUIRED is on) and print it once."

    def add_arguments(self, parser):
        parser.add_argument("name", help="Who or what uses this key.")
        parser.add_argument("--tier", action="append", default=[], help="A tier the key may use (repeat; default: all).")
        parser.add_argument("--expires-in-days", type=float, default=None, help="Expire after this many days.")
        parser.add_argument("--rpm", type=int, default=None, help="Requests per minute (default: no limit).")
        parser.add_argument("--tpm", type=int, default=None, help="Tokens per minute (default: no limit).")

    def handle(self, *args, name, tier, expires_in_days, rpm, tpm, **options):
        tiers = list(Tier.objects.filter(name__in=tier))
        unknown = sorted(set(tier) - {t.name for t in tiers})
        if unknown:
            raise CommandError(f"No such tier: {', '.join(unknown)}.")
        for value, flag in ((rpm, "--rpm"), (tpm, "--tpm"), (expires_in_days, "--expires-in-days")):
            if value is not None and value <= 0:
                raise CommandError(f"{flag} must be positive.")
        expires = timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None
        key, secret = api_key_create(
            name=name, tiers=tiers, expires_at=expires, requests_per_minute=rpm, tokens_per_minute=tpm
        )
        scope = ", ".join(t.name for t in tiers) or "all tiers"
        self.stderr.write(f"API key '{name}' ({scope}). It is shown only now; only its hash is stored:")
        self.stdout.write(secret)
