"""Staging: a job's inputs onto the worker — the dataset version's normalized
files and the source model of a compression — into the job's folder, once."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage

from .models import Job


def job_folder(job: Job) -> Path:
    return Path(settings.LATHE_CHECKPOINT_ROOT) / str(job.organization_id) / str(job.pk)


def _stage(target: Path, sources: list[str]) -> Path:
    """The stored files `sources`, one after the other, as `target` next to the job, once."""
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{target}.tmp", "wb") as dst:
            for source in sources:
                with default_storage.open(source, "rb") as src:
                    shutil.copyfileobj(src, dst)
        os.replace(f"{target}.tmp", target)
    return target


def _every_row(version) -> list[str]:
    return [version.train_file, version.validation_file]


def fetch_dataset(job: Job, folder: Path) -> tuple[Path, Path]:
    """The job's train and validation files next to it, once: the dataset version's normalized splits
    or, with a separate validation set, every row of the dataset version for training and every row of
    the validation version for validation."""
    data = folder / "data"
    version, separate = job.dataset_version, job.validation_dataset_version
    if separate is not None:
        return _stage(data / "train.jsonl", _every_row(version)), _stage(data / "validation.jsonl", _every_row(separate))
    return _stage(data / "train.jsonl", [version.train_file]), _stage(data / "validation.jsonl", [version.validation_file])


def fetch_test_set(job: Job, folder: Path) -> Path | None:
    """A fine-tune's attached test set (every row of its dataset version: train and validation
    splits together), copied next to the job once; None without one."""
    version = job.test_dataset_version
    return _stage(folder / "data" / "test.jsonl", _every_row(version)) if version is not None else None


def extract_model(job: Job, folder: Path) -> Path:
    """The source model (an earlier job's model.zip or an uploaded model's
    validated archive), unpacked with the same safety checks as uploads."""
    from registry.validation import safe_extract

    target = folder / "source-model"
    if (target / "config.json").exists():
        return target
    storage_name = (job.source_model.storage_name if job.source_model_id
                    else job.source_job.artifacts.get(name="model.zip").storage_name)
    tmp = folder / "source-model.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with default_storage.open(storage_name, "rb") as fh:
        unpacked = safe_extract(fh, tmp, max_unpacked_bytes=10 * settings.LATHE_MODEL_MAX_FILE_BYTES)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(unpacked, target)
    shutil.rmtree(tmp, ignore_errors=True)
    return target
