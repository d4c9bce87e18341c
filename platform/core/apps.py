from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "core"
    verbose_name = "Core"

    def ready(self) -> None:
        from . import schema  # noqa: F401  (registers OpenAPI extensions)
        from .runtime_folders import ensure_runtime_folders

        ensure_runtime_folders()  # var/, static root, the embedded broker's folders: at start-up, not at import
