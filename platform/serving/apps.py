from django.apps import AppConfig


class ServingConfig(AppConfig):
    """Try-it: synchronous predictions and chat replies answered by inference workers (docs/inference.md)."""

    name = "serving"
    verbose_name = "Serving"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import worker_signals  # noqa: F401  (the inference worker's heartbeat, in worker processes only)
