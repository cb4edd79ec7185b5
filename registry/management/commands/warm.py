"""`manage.py warm [TIER ...]`: load tiers in the running server now, showing each load time."""

from django.core.management.base import BaseCommand

from registry.client import command_call


class Command(BaseCommand):
    help = "Load tiers in the running server now (default: every enabled tier) and show their load times."

    def add_arguments(self, parser):
        parser.add_argument("tiers", nargs="*", help="Tier names or aliases (default: every enabled tier).")

    def handle(self, *args, tiers, **options):
        if not tiers:
            status = command_call("GET", "/internal/status", timeout=30)
            tiers = [t["name"] for t in status["tiers"] if t["enabled"]]
        for index, name in enumerate(tiers, 1):
            self.stdout.write(f"[{index}/{len(tiers)}] warming {name} ... ", ending="")
            self.stdout.flush()
            result = command_call("POST", f"/internal/warm/{name}")
            self.stdout.write(self.style.SUCCESS(f"{result['state']}, loaded in {result['load_seconds']:.2f}s"))
