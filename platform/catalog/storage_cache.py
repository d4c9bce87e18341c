"""A catalog model kept in object storage (source kind 'storage'): its files are
copied once into a local folder, <var dir>/models/storage/<digest of the prefix>.

A prefix is treated as immutable (upload new weights under a new prefix): the
copy is made once, into a temporary folder renamed into place, so a reader never
sees half a model, and two processes copying at once both end with a whole one."""
from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path

from django.core.files.storage import default_storage

from .folders import models_dir

COPY_CHUNK_BYTES = 8 * 1024 * 1024
COMPLETE_MARKER = ".lathe-complete"


class StorageModelError(Exception):
    pass


def _folder_for(prefix: str) -> Path:
    return models_dir() / "storage" / hashlib.sha256(prefix.encode()).hexdigest()[:24]


def storage_files(prefix: str) -> list[str]:
    """The file names directly under `prefix` (a save_pretrained folder is flat)."""
    prefix = prefix.strip().strip("/")
    if not prefix or ".." in prefix.split("/"):
        raise StorageModelError("Give the storage prefix of a save_pretrained folder, e.g. base-models/my-model.")
    try:
        _dirs, files = default_storage.listdir(prefix)
    except (FileNotFoundError, NotADirectoryError, OSError) as exc:
        raise StorageModelError(f"Nothing is stored under '{prefix}' ({type(exc).__name__}).") from None
    names = sorted(f for f in files if f and "/" not in f and f not in (".", ".."))
    if not names:
        raise StorageModelError(f"No files are stored directly under '{prefix}'.")
    return names


def materialize(*, prefix: str) -> Path:
    """The local copy of the model stored under `prefix`, made on first use."""
    target = _folder_for(prefix.strip().strip("/"))
    if (target / COMPLETE_MARKER).exists():
        return target
    names = storage_files(prefix)
    clean = prefix.strip().strip("/")
    staging = target.with_name(f"{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    staging.mkdir(parents=True)
    try:
        for name in names:
            with default_storage.open(f"{clean}/{name}", "rb") as src, open(staging / name, "wb") as dst:
                shutil.copyfileobj(src, dst, COPY_CHUNK_BYTES)
        (staging / COMPLETE_MARKER).write_text(clean + "\n")
        if target.exists() and not (target / COMPLETE_MARKER).exists():
            shutil.rmtree(target, ignore_errors=True)  # an interrupted copy of an older Lathe
        try:
            os.rename(staging, target)
        except OSError:  # another process finished first: keep its copy
            if not (target / COMPLETE_MARKER).exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
