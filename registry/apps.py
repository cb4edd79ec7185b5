from django.apps import AppConfig


class RegistryConfig(AppConfig):
    name = "registry"
    verbose_name = "Model registry"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
        from . import tier_snapshot  # noqa: F401  (drops the tier snapshot when a tier changes)
