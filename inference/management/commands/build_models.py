"""`manage.py build_models`: build the models the project makes itself (see inference/model_build.py)."""

from django.core.management.base import BaseCommand

from inference import model_build


class Command(BaseCommand):
    requires_system_checks: list = []  # no database needed
    help = (
        "Build the reranker distilled from MiniLM, the tiny BGE-M3-format model, the MiniLM GGUF and the MLX "
        "models (a tiny test llama, SmolLM2 converted from its GGUF) into MODELS_DIR (skips existing)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--force", action="store_true", help="Rebuild even when the output exists.")

    def handle(self, *args, force: bool = False, **options):
        for path in model_build.build_all(force=force):
            self.stdout.write(f"ready: {path}")
