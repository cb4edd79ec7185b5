"""`manage.py sync_tiers [--force]`: seed tiers from the environment / .env."""

from django.core.management.base import BaseCommand, CommandError

from registry.client import ServerRefused, ServerUnreachable, server_call
from registry.services import tier_seed_from_env


class Command(BaseCommand):
    help = "Create tiers configured in the environment that don't exist yet; --force overwrites existing ones."

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="Overwrite existing tiers from the environment.")

    def handle(self, *args, force=False, **options):
        results = tier_seed_from_env(force=force)
        if not results:
            self.stdout.write("No tiers are configured in the environment.")
        for r in results:
            line = f"{r.name}: {r.action}" + (f" ({r.detail})" if r.detail else "")
            self.stdout.write(self.style.ERROR(line) if r.action == "error" else line)
        if any(r.action != "error" for r in results):
            try:  # a running server re-reads its tiers now, not TIER_SNAPSHOT_SECONDS later
                server_call("POST", "/internal/tiers/reread", timeout=10)
            except (ServerUnreachable, ServerRefused):
                self.stdout.write("(no running server reached: one running elsewhere applies the change "
                                  "within TIER_SNAPSHOT_SECONDS)")
        if any(r.action == "error" for r in results):
            raise CommandError("Some tiers could not be seeded.")
