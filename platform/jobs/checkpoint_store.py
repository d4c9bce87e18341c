"""Checkpoints in object storage, so a job killed on one host resumes on another that shares nothing
with it but PostgreSQL, Redis and the bucket (issue 17).

With LATHE_CHECKPOINTS_IN_STORAGE on (the default when an S3 bucket is configured), every checkpoint the
worker reports (workers/checkpoints.py: a step folder, best/, a finished phase's JSON) is copied under
`checkpoints/<organization>/<job>/<its path under the job's checkpoint folder>/` with a manifest of its
files' sizes and SHA-256, written last: a checkpoint without its manifest is not one. The JobCheckpoint row
is written only after the copy is complete (and fenced by the lease as before), so a checkpoint counts
once it is wholly stored. A new attempt on a host without the job's folder restores, before its spec is
built, the newest stored step folder of each phase, best/ and the phase files, verifying every digest,
and points `latest` at the restored step folder — then the worker resumes exactly as on the first host.

The copy is synchronous with the training thread: the resume point (the row's time) is then exactly the
moment the checkpoint became durable, which the ledger's exclusion of redone work relies on."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path, PurePosixPath

from django.conf import settings
from django.core.files.base import ContentFile, File
from django.core.files.storage import default_storage

MANIFEST = "manifest.json"
CHUNK = 8 * 1024 * 1024


class CheckpointStoreError(Exception):
    pass


def enabled() -> bool:
    return bool(settings.LATHE_CHECKPOINTS_IN_STORAGE)


def job_prefix(job) -> str:
    return f"checkpoints/{job.organization_id}/{job.pk}"


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _put(name: str, content) -> None:
    """Write `name` exactly (storages rename on a clash; a re-stored checkpoint replaces the old one)."""
    if default_storage.exists(name):
        default_storage.delete(name)
    stored = default_storage.save(name, content)
    if stored != name:  # never expected after the delete; a renamed copy would be unreachable
        default_storage.delete(stored)
        raise CheckpointStoreError(f"storage wrote {stored} instead of {name}")


def store(job, *, checkpoint_dir: str, path: str) -> str:
    """Copy the checkpoint at `path` (a folder or a file under `checkpoint_dir`) to storage; returns its
    storage prefix. The manifest goes last."""
    relative = PurePosixPath(Path(path).resolve().relative_to(Path(checkpoint_dir).resolve()).as_posix())
    prefix = f"{job_prefix(job)}/{relative}"
    files = ([Path(path)] if os.path.isfile(path)
             else sorted(p for p in Path(path).iterdir() if p.is_file()))
    manifest = {"relative": str(relative), "kind": "file" if os.path.isfile(path) else "folder", "files": {}}
    if default_storage.exists(f"{prefix}/{MANIFEST}"):  # a stale manifest must not vouch for new files
        default_storage.delete(f"{prefix}/{MANIFEST}")
    for file in files:
        with open(file, "rb") as fh:
            _put(f"{prefix}/{file.name}", File(fh, name=file.name))
        manifest["files"][file.name] = {"bytes": file.stat().st_size, "sha256": _sha256(str(file))}
    _put(f"{prefix}/{MANIFEST}", ContentFile(json.dumps(manifest, sort_keys=True).encode()))
    return prefix


def _fetch(prefix: str, target: Path) -> None:
    """One stored checkpoint into `target` (a folder, or a file for a phase's JSON), verified."""
    try:
        with default_storage.open(f"{prefix}/{MANIFEST}", "rb") as fh:
            manifest = json.loads(fh.read())
    except (FileNotFoundError, OSError) as exc:
        raise CheckpointStoreError(f"{prefix} has no manifest: it was never completely stored") from exc
    folder = target.parent / f".{target.name}.restore"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for name, facts in manifest["files"].items():
        if "/" in name or name in ("", ".", ".."):
            raise CheckpointStoreError(f"{prefix}: refusing the file name {name!r}")
        local = folder / name
        with default_storage.open(f"{prefix}/{name}", "rb") as src, open(local, "wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK)
        if local.stat().st_size != facts["bytes"] or _sha256(str(local)) != facts["sha256"]:
            shutil.rmtree(folder, ignore_errors=True)
            raise CheckpointStoreError(f"{prefix}/{name} does not match its manifest (size or SHA-256)")
    if manifest["kind"] == "file":
        (only,) = manifest["files"]
        os.replace(folder / only, target)
        shutil.rmtree(folder, ignore_errors=True)
    else:
        shutil.rmtree(target, ignore_errors=True)
        os.replace(folder, target)


def restore(job, *, checkpoint_dir: Path) -> list[str]:
    """Bring the job's stored checkpoints into `checkpoint_dir` where this host lacks them: per phase folder
    the newest step folder (and `latest` pointing at it), best/, and the phase files. Returns what was
    restored (relative paths)."""
    from .models import JobCheckpoint

    prefix = job_prefix(job) + "/"
    newest: dict[tuple[str, str], str] = {}  # (parent folder, what) → relative path, newest first
    rows = JobCheckpoint.objects.filter(job=job, path__startswith=prefix).order_by("-created_at", "-id")
    for stored in rows.values_list("path", flat=True):
        relative = PurePosixPath(stored[len(prefix):])
        what = "step" if relative.name.startswith("step-") else relative.name
        newest.setdefault((str(relative.parent), what), stored)
    restored = []
    for (parent, what), stored in sorted(newest.items()):
        relative = stored[len(prefix):]
        target = Path(checkpoint_dir) / relative
        present = target.is_file() if what.endswith(".json") else (target / "state.json").exists()
        if not present:
            _fetch(stored, target)
            restored.append(relative)
        if what == "step":
            latest = target.parent / "latest"
            tmp = target.parent / ".latest.restore"
            tmp.write_text(target.name)
            os.replace(tmp, latest)
    return restored
