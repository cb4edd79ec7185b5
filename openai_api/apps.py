from django.apps import AppConfig


class OpenAIApiConfig(AppConfig):
    name = "openai_api"
    verbose_name = "OpenAI-compatible API"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
