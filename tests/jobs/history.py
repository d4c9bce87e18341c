"""Recorded history for the estimator: finished jobs whose result carries what
their attempt measured (`throughput`, as jobs.runner records it at job end).
Estimates are fed these rows; no test measures wall time."""
from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from jobs.models import Job, JobKind, JobState
from tests.jobs.conftest import slice_csv

PARAMETERS = 1_000_000


@pytest.fixture
def model(tiny_bert):
    """The tiny BERT with a parameter count the estimator prices by."""
    type(tiny_bert).objects.filter(pk=tiny_bert.pk).update(parameter_count=PARAMETERS)
    tiny_bert.refresh_from_db()
    return tiny_bert


@pytest.fixture
def version(tenant_a, model, media):
    return tokenized_dataset(tenant_a, model)


def measured_job(organization, version, base_model, *, method: str = "full", device_class: str = "cpu",
                 tokens_per_second: float, parameters: int | None = None, tokens: int = 100_000, startup: float = 10.0,
                 age_minutes: float = 0, kind: str = JobKind.FINETUNE, queue: str = "default") -> Job:
    """A succeeded job that processed `tokens` at `tokens_per_second` plus `startup` seconds."""
    parameters = parameters or base_model.parameter_count or 110_000_000
    work = tokens / tokens_per_second
    finished = timezone.now() - timedelta(minutes=age_minutes)
    return Job.objects.create(
        organization=organization, kind=kind, state=JobState.SUCCEEDED, dataset_version=version, base_model=base_model,
        method=(method if kind == JobKind.FINETUNE else method.removeprefix("chat-") if kind == JobKind.CHAT_FINETUNE
                else "full"), device_class=device_class, queue=queue, labels=["a", "b"],
        spec={"prune_method": method} if kind == JobKind.PRUNE else {},
        started_at=finished - timedelta(seconds=work + startup), finished_at=finished,
        result={"throughput": {"method": method, "device_class": device_class, "parameters": parameters,
                               "tokens": tokens, "work_seconds": round(work, 3), "seconds": round(work + startup, 3)}})


def tokenized_dataset(tenant, base_model, *, labels: int = 4):
    """The BANKING77 slice uploaded with `base_model` chosen, so its report's
    lengths are in that model's tokens."""
    from corpora.services import dataset_upload
    from tenancy.actors import Actor

    version = dataset_upload(organization=tenant.organization, actor=Actor.for_membership(tenant.owner_membership),
                             uploaded=SimpleUploadedFile("slice.csv", slice_csv(labels)), base_model=base_model,
                             validation_fraction=0.2)
    return version


def row_lengths(version, base_model, *, splits=("train", "validation")) -> list[int]:
    """Each row's real token count (special tokens included, untruncated), as the worker's tokenizer sees it."""
    import json

    from django.core.files.storage import default_storage

    tokenizer = base_model.load_tokenizer()
    texts = []
    for name in (getattr(version, f"{split}_file") for split in splits):
        with default_storage.open(name, "rb") as fh:
            texts += [json.loads(line)["text"] for line in fh.read().decode().splitlines() if line.strip()]
    return [len(ids) for ids in tokenizer(texts, truncation=False)["input_ids"]]
