"""Folders of this installation that hold model files."""
from __future__ import annotations

from pathlib import Path


def models_dir() -> Path:
    """Where converted and cached model folders live: <var dir>/models."""
    from django.conf import settings

    return Path(getattr(settings, "LATHE_MODELS_DIR", None) or Path(settings.VAR_DIR) / "models")
