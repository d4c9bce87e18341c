#!/usr/bin/env python
"""Django's command-line utility for Lathe.

`platform/` is a *source root*, not a package: it goes on sys.path so its children
(config, core, accounts, ...) are top-level names. It must never get an __init__.py,
or it would shadow the standard library's `platform` module that torch, celery and
redis import.
"""
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent


def bootstrap_paths() -> None:
    for path in (REPO_ROOT, REPO_ROOT / "platform"):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


def main() -> None:
    bootstrap_paths()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.dev")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
