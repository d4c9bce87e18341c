"""What a job's model cards say that its worker cannot know by itself: the base
model's public name, where to get it and its licence (from the catalog), which
hyperparameters the user chose (the rest were resolved from 'auto'), and the
dataset. Passed to the worker as `card` in its spec; workers/cards.py renders it."""
from __future__ import annotations

from .models import FINETUNE_KINDS, Job


def chosen_hyperparameters(job: Job) -> list[str]:
    """The names the user gave a value for; every other one was 'auto'."""
    given = job.requested if job.kind in FINETUNE_KINDS else (job.requested or {}).get("hyperparameters") or {}
    return sorted(name for name, value in given.items() if value not in ("auto", None))


def card_facts(job: Job) -> dict:
    version = job.dataset_version
    return {
        "base_model": job.base_model.public_facts() if job.base_model_id else None,
        "user_set": chosen_hyperparameters(job),
        "dataset": {"name": version.dataset.name, "version": version.number},
    }
