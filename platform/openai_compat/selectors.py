"""Reads for /v1/: files are the organization's chat dataset versions, fine-tuning jobs its chat fine-tunes,
models the catalog's chat models and its succeeded chat fine-tunes (artifacts not deleted)."""
from __future__ import annotations

import re

from django.db.models import QuerySet

from catalog.models import BaseModel
from core.errors import NotFound, field_error
from corpora.models import DatasetVersion, Task
from jobs.models import Job, JobKind, JobState
from jobs.selectors import job_list

from . import ids

PURPOSE = "fine-tune"
MAX_PAGE = 100


METADATA_KEY = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]|_(?!_)){0,63}")


def check_metadata_key(key: str, *, field: str) -> None:
    """Keys are letters, digits, '-' and single '_' (up to 64): they become a JSON path in the filter."""
    if not METADATA_KEY.fullmatch(str(key)):
        raise field_error(field, f"Metadata keys are 1 to 64 letters, digits, '-' or '_' (no '__'); got {str(key)[:70]!r}.")


def page_limit(value, *, default: int) -> int:
    if value in (None, ""):
        return default
    try:
        limit = int(value)
    except (TypeError, ValueError):
        raise field_error("limit", f"limit must be an integer between 1 and {MAX_PAGE}.") from None
    if not 1 <= limit <= MAX_PAGE:
        raise field_error("limit", f"limit must be between 1 and {MAX_PAGE} (got {limit}).")
    return limit


def cursor_page(qs: QuerySet, *, kind: str, after, limit: int, newest_first: bool = True) -> tuple[list, bool]:
    """OpenAI's cursor pagination: `after` is the id of the last item of the previous page."""
    if after not in (None, ""):
        try:
            pk = ids.decode(kind, after, what="cursor")
        except NotFound:
            raise field_error("after", f"after must be an id of this list ({ids.PREFIXES[kind]}…), "
                                       f"got {str(after)[:80]!r}.") from None
        qs = qs.filter(pk__lt=pk) if newest_first else qs.filter(pk__gt=pk)
    rows = list(qs.order_by("-pk" if newest_first else "pk")[: limit + 1])
    return rows[:limit], len(rows) > limit


def file_list(*, organization) -> QuerySet[DatasetVersion]:
    return DatasetVersion.objects.filter(organization=organization, task=Task.CHAT).select_related("dataset")


def file_get(*, organization, file_id) -> DatasetVersion:
    version = file_list(organization=organization).filter(pk=ids.decode("file", file_id, what="file")).first()
    if version is None:
        raise NotFound(f"No such file: {str(file_id)[:80]!r}.")
    return version


def fine_tuning_job_list(*, organization, metadata: dict | None = None) -> QuerySet[Job]:
    qs = job_list(organization=organization, kind=JobKind.CHAT_FINETUNE).select_related("openai_request")
    for key, value in (metadata or {}).items():
        check_metadata_key(key, field=f"metadata[{key}]")
        qs = qs.filter(**{f"openai_request__metadata__{key}": value})
    return qs


def fine_tuning_job_get(*, organization, job_id) -> Job:
    job = fine_tuning_job_list(organization=organization).filter(pk=ids.decode("job", job_id, what="fine-tuning job")).first()
    if job is None:
        raise NotFound(f"No such fine-tuning job: {str(job_id)[:80]!r}.")
    return job


def request_of(job: Job):
    try:
        return job.openai_request
    except Job.openai_request.RelatedObjectDoesNotExist:
        return None


def suffix_of(job: Job) -> str:
    request = request_of(job)
    return request.suffix if request else ""


def model_name_of(job: Job) -> str:
    return ids.fine_tuned_model_name(base_slug=job.base_model.slug, organization_slug=job.organization.slug,
                                     suffix=suffix_of(job), job_pk=job.pk)


def has_model(job: Job) -> bool:
    request = request_of(job)
    return (job.state == JobState.SUCCEEDED and not (request and request.model_deleted_at)
            and job.artifacts.filter(name="model.zip").exists())


def base_chat_models() -> QuerySet[BaseModel]:
    from catalog.selectors import base_model_list

    return base_model_list(task_family="chat")


def fine_tuned_jobs(*, organization) -> list[Job]:
    from jobs.models import JobArtifact

    with_weights = JobArtifact.objects.filter(organization=organization, name="model.zip").values("job_id")
    qs = fine_tuning_job_list(organization=organization).filter(state=JobState.SUCCEEDED, pk__in=with_weights)
    return [job for job in qs.select_related("organization") if has_model(job)]


def fine_tuned_job_get(*, organization, model_id: str) -> Job:
    """The succeeded chat fine-tune a ft:… name names (all of the name must match: a foreign one is not found)."""
    pk = ids.job_pk_of_model(model_id)
    job = fine_tuning_job_list(organization=organization).filter(pk=pk).select_related("organization").first() if pk else None
    if job is None or model_name_of(job) != model_id or not has_model(job):
        raise NotFound(f"The model {str(model_id)[:120]!r} does not exist.")
    return job
