from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"

    def ready(self):
        from . import worker_signals  # noqa: F401  (connects the fleet's Celery signals)
