from __future__ import annotations

from datetime import timedelta

from django.db.models import Avg, F, Q, QuerySet, Sum
from django.utils import timezone

from core.errors import NotFound, field_error

from .models import Job, JobArtifact, JobState


def job_list(*, organization, state: str | None = None, kind: str | None = None, created_after=None, created_before=None) -> QuerySet[Job]:
    qs = Job.objects.filter(organization=organization).select_related("base_model", "source_model", "dataset_version__dataset")
    if state:
        if state not in JobState.values:
            raise field_error("state", f"state must be one of {', '.join(JobState.values)}.")
        qs = qs.filter(state=state)
    if kind:
        qs = qs.filter(kind=kind)
    if created_after:
        qs = qs.filter(created_at__gte=created_after)
    if created_before:
        qs = qs.filter(created_at__lt=created_before)
    return with_usage(qs).order_by("-created_at", "-id")


def with_usage(qs: QuerySet[Job]) -> QuerySet[Job]:
    """Each job's seconds: `billed_seconds` (billable: not excluded as work lost
    to infrastructure; the open attempt's included), `excluded_seconds` (not
    billed) and `running_seconds` (the open attempt's, not yet in the ledger)."""
    seconds = "usage_segments__seconds"
    return qs.annotate(
        billed_seconds=Sum(seconds, filter=Q(usage_segments__exclusion__isnull=True)),
        excluded_seconds=Sum(seconds, filter=Q(usage_segments__exclusion__isnull=False)),
        running_seconds=Sum(seconds, filter=Q(state=JobState.RUNNING, usage_segments__lease_token=F("lease_token"),
                                              usage_segments__exclusion__isnull=True)))


def open_attempt_usage(*, organization) -> dict[int, float]:
    """Seconds metered so far by the organization's running attempts (job id →
    seconds), for pages that mark usage still running (the Billing page)."""
    from .models import UsageSegment

    rows = (UsageSegment.objects.filter(organization=organization, job__state=JobState.RUNNING,
                                        lease_token=F("job__lease_token"), exclusion__isnull=True)
            .values("job_id").annotate(seconds=Sum("seconds")))
    return {row["job_id"]: float(row["seconds"]) for row in rows}


def job_get(*, organization, job_id) -> Job:
    job = job_list(organization=organization).filter(pk=job_id).first()
    if job is None:
        raise NotFound("Job not found.")
    return job


def queue_position(*, job: Job) -> int | None:
    """1 = next. Ahead: same queue, higher priority, or same priority queued earlier."""
    if job.state != JobState.QUEUED:
        return None
    ahead = Job.objects.filter(state=JobState.QUEUED, queue=job.queue).filter(
        Q(priority__lt=job.priority) | Q(priority=job.priority, queued_at__lt=job.queued_at)).count()
    return ahead + 1


def typical_duration(*, queue: str) -> timedelta | None:
    recent = Job.objects.filter(state=JobState.SUCCEEDED, queue=queue, started_at__isnull=False).order_by("-finished_at")[:20]
    average = recent.aggregate(d=Avg(F("finished_at") - F("started_at")))["d"] if recent else None
    return average


def eta(*, job: Job, position: int | None = None):
    """When the job should finish (running) or start (queued), or None.
    `position`: the queue position when the caller already has it."""
    now = timezone.now()
    if job.state == JobState.RUNNING and job.step and job.total_steps and job.started_at:
        elapsed = (now - job.started_at).total_seconds()
        return now + timedelta(seconds=elapsed / job.step * (job.total_steps - job.step))
    if job.state == JobState.QUEUED:
        typical = typical_duration(queue=job.queue)
        position = position if position is not None else queue_position(job=job)
        if typical and position:
            return now + typical * (position - 1)
    return None


def artifact_get(*, job: Job, name: str) -> JobArtifact:
    artifact = job.artifacts.filter(name=name).first()
    if artifact is None:
        raise NotFound("Artifact not found.")
    return artifact
