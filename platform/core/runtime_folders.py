"""The folders this installation writes into, created at start-up rather than
when settings are imported (cookiecutter-django: settings have no side effects).

Called from CoreConfig.ready(), so every process that runs Django creates them
before it first needs them: the web process and manage.py commands, the Celery
worker and beat (Celery's Django fix-up calls django.setup() before a worker
consumes or beat opens its schedule file), and the tests.
"""
from __future__ import annotations

from pathlib import Path

from django.conf import settings

BROKER_FOLDER_OPTIONS = ("data_folder_in", "data_folder_out", "control_folder")


def runtime_folders() -> list[Path]:
    """var/ (SQLite, beat's schedule, seed credentials), the static root, and on
    the embedded broker Kombu's filesystem transport folders and the file result
    backend's (neither creates its own)."""
    folders = [Path(settings.VAR_DIR), Path(settings.STATIC_ROOT)]
    if str(settings.CELERY_BROKER_URL).startswith("filesystem://"):
        options = settings.CELERY_BROKER_TRANSPORT_OPTIONS
        folders += [Path(options[name]) for name in BROKER_FOLDER_OPTIONS if options.get(name)]
    backend = str(settings.CELERY_RESULT_BACKEND or "")
    if backend.startswith("file://"):
        folders.append(Path(backend.removeprefix("file://")))
    return folders


def ensure_runtime_folders() -> None:
    for folder in runtime_folders():
        folder.mkdir(parents=True, exist_ok=True)
