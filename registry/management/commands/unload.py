"""`manage.py unload [TIER ...|--all]`: unload tiers in the running server."""

from django.core.management.base import BaseCommand, CommandError

from registry.client import command_call


class Command(BaseCommand):
    help = "Unload tiers in the running server once their in-flight requests finish."

    def add_arguments(self, parser):
        parser.add_argument("tiers", nargs="*", help="Tier names or aliases.")
        parser.add_argument("--all", action="store_true", help="Unload every loaded tier.")

    def handle(self, *args, tiers, all=False, **options):
        if not tiers and not all:
            raise CommandError("Name the tiers to unload, or pass --all.")
        result = command_call("POST", "/internal/unload", {"tiers": tiers, "all": all}, timeout=30)
        for name in result["unloaded"]:
            self.stdout.write(self.style.SUCCESS(f"{name}: unloaded (after its in-flight requests)"))
        for name in result["not_loaded"]:
            self.stdout.write(f"{name}: was not loaded")
        if all and not result["unloaded"]:
            self.stdout.write("No tier was loaded.")
