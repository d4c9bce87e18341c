from django.apps import AppConfig


class OpenAICompatConfig(AppConfig):
    """The OpenAI-compatible fine-tuning surface under /v1/ (docs/openai-compatible.md)."""

    name = "openai_compat"
    label = "openai_compat"
    verbose_name = "OpenAI-compatible API"
    default_auto_field = "django.db.models.BigAutoField"
