"""`manage.py clearcache [--tier TIER] [--expired]`: clear the running server's response cache."""

from django.core.management.base import BaseCommand

from registry.client import command_call


class Command(BaseCommand):
    help = "Clear cached responses in the running server (memory and database)."

    def add_arguments(self, parser):
        parser.add_argument("--tier", help="Only this tier's entries.")
        parser.add_argument("--expired", action="store_true", help="Only expired entries.")

    def handle(self, *args, tier=None, expired=False, **options):
        result = command_call("POST", "/internal/cache/clear", {"tier": tier, "expired_only": expired}, timeout=30)
        self.stdout.write(self.style.SUCCESS(f"Deleted {result['deleted']} cached responses."))
