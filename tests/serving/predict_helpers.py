"""A delivered model for batch-prediction tests: a tiny classifier (or chat model) built here, zipped as the
workers deliver model.zip, stored as the artifact of a succeeded job of the organization."""
from __future__ import annotations

import hashlib

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from jobs.models import Job, JobArtifact, JobKind, JobState
from tests.model_archives import zip_bytes


def archive(files: dict[str, bytes]) -> bytes:
    """A model archive holding `files` under one folder, as uploads may (the archive's content is not loaded)."""
    import io
    import zipfile

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name, data in files.items():
            zf.writestr(f"model/{name}", data)
    return out.getvalue()


def stored_artifact(job, name: str, data: bytes, kind: str = "model") -> JobArtifact:
    storage_name = default_storage.save(f"artifacts/{job.pk}/{name}", ContentFile(data))
    return JobArtifact.objects.create(job=job, organization=job.organization, name=name, kind=kind,
                                      storage_name=storage_name, size_bytes=len(data),
                                      sha256=hashlib.sha256(data).hexdigest())


def model_job(tenant, version, folder, *, labels, kind=JobKind.FINETUNE, name="intents") -> Job:
    job = Job.objects.create(organization=tenant.organization, kind=kind, state=JobState.SUCCEEDED,
                             dataset_version=version, labels=list(labels), name=name)
    data = zip_bytes(folder, top="model")
    stored = default_storage.save(f"artifacts/{job.pk}/model.zip", ContentFile(data))
    JobArtifact.objects.create(job=job, organization=job.organization, name="model.zip", kind="model",
                               storage_name=stored, size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    return job
