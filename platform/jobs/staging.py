"""Staging: a job's inputs onto the worker — the dataset version's normalized
files and the source model of a compression — into the job's folder, once."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage

from .models import Job, JobKind


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


def family_root(job: Job) -> Job:
    """The job a chain of compressions started from (itself when it is not derived)."""
    while job.source_job_id and job.kind != JobKind.EVALUATE:
        job = job.source_job
    return job


def held_out_rows(fine_tune: Job, folder: Path) -> list[dict] | None:
    """The rows fine-tune `fine_tune` never trained on or chose by: every row of its attached test set, or the
    test split it carved — the same carve_test over the same train rows its worker read (fetch_dataset's), so
    the same rows. None without a test set."""
    from workers.chat.data import carve_test_conversations
    from workers.data import carve_test, read_jsonl

    data = folder / "data"
    if fine_tune.test_dataset_version_id:
        return read_jsonl(str(_stage(data / f"held-out-{fine_tune.pk}.jsonl", _every_row(fine_tune.test_dataset_version))))
    if not fine_tune.test_fraction:
        return None
    version, separate = fine_tune.dataset_version, fine_tune.validation_dataset_version
    sources = _every_row(version) if separate is not None else [version.train_file]
    trained_from = read_jsonl(str(_stage(data / f"train-of-{fine_tune.pk}.jsonl", sources)))
    if fine_tune.kind == JobKind.CHAT_FINETUNE:  # the same carve as its worker's (workers/chat/train.py)
        held = carve_test_conversations([row["messages"] for row in trained_from], fine_tune.test_fraction)[1]
        return [{"messages": messages} for messages in held]
    return carve_test(trained_from, fine_tune.test_fraction)[1]


def write_rows(target: Path, rows: list[dict]) -> Path:
    """`rows` as a JSON-lines file at `target`, written whole or not at all."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{target}.tmp", "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(f"{target}.tmp", target)
    return target


def fetch_training_rows_of_derived(job: Job, folder: Path) -> tuple[Path, Path]:
    """A compression's train and validation files: fetch_dataset's, less the rows its chain's fine-tune held out
    as its carved test split when it trains on the same dataset version — so the family's held-out comparison
    (evaluate held_out_of_job_id) scores rows no variant trained on."""
    from workers.data import read_jsonl, without_texts

    train_file, validation_file = fetch_dataset(job, folder)
    root = family_root(job)
    if root is job or root.kind != JobKind.FINETUNE or not root.test_fraction or root.dataset_version_id != job.dataset_version_id:
        return train_file, validation_file
    target = folder / "data" / "train-less-held-out.jsonl"
    if not target.exists():
        write_rows(target, without_texts(read_jsonl(str(train_file)), held_out_rows(root, folder) or []))
    return target, validation_file


def guard_rows_of_derived(job: Job, folder: Path) -> tuple[Path, str] | None:
    """Where a compression of a refit fine-tune is measured, and why: that fine-tune was trained on its
    validation split at the end (refit), so that split flatters it and would fail its students and
    recovered models unfairly — the guard and the before/after report use the rows it held out instead
    (its attached test set or carved test split), and the validation split chooses nothing (CompressionSpec.
    validation_seen_by_source). None where the validation split is unseen by the source model (measure there)."""
    root = family_root(job)
    if (root is job or root.kind != JobKind.FINETUNE or not (root.result or {}).get("refit")
            or root.dataset_version_id != job.dataset_version_id or job.validation_dataset_version_id):
        return None
    rows = held_out_rows(root, folder)
    if not rows:
        return None
    target = folder / "data" / "guard-held-out.jsonl"
    if not target.exists():
        write_rows(target, rows)
    held = "attached test set" if root.test_dataset_version_id else f"{root.test_fraction:.0%} test split"
    return target, (f"the {held} of job {root.pk}, rows it never trained on (it was refit on its validation split, "
                    "which would flatter it)")


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
