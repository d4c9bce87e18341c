"""Metering: the usage segments of job attempts and their exclusions, which the
ledger (ledger.py) prices. Jobs record usage through `record_segment` and tell
billing about lost work through `exclude_lost_work`; they read usage back
through the helpers below and never touch these models themselves. Jobs are
referenced by id or instance only: nothing here imports the jobs app."""
from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db import connection
from django.db.models import F, Q, QuerySet, Sum

from .models import InferenceUsage, LedgerEntry, UsageExclusion, UsageSegment
from .services import amount_micros

RUNNING = "running"  # jobs.models.JobState.RUNNING, by value (billing sits below jobs)


def record_segment(*, job, lease_token, attempt: int, device_class: str, device_count: int, started_at: datetime,
                   ended_at: datetime) -> UsageSegment:
    """Meter one interval of an attempt. Call it inside the transaction that
    extended the job's lease under `lease_token` (jobs.lifecycle.record_usage):
    the lease decides who may bill. A retry after a commit whose answer was lost
    (the database went away) sends the same interval again and must not bill it
    twice: a segment starts where this lease's last one ended, never before."""
    if not connection.in_atomic_block:
        raise RuntimeError("record_segment belongs in the transaction that extends the job's lease.")
    covered = (UsageSegment.objects.filter(job_id=job.pk, lease_token=lease_token).order_by("-ended_at")
               .values_list("ended_at", flat=True).first())
    if covered is not None and covered > started_at:
        started_at = min(covered, ended_at)
    seconds = Decimal(max(0.0, (ended_at - started_at).total_seconds())).quantize(Decimal("0.001"))
    return UsageSegment.objects.create(organization_id=job.organization_id, job_id=job.pk, attempt=attempt,
                                       lease_token=lease_token, device_class=device_class, device_count=device_count,
                                       started_at=started_at, ended_at=ended_at, seconds=seconds)


def record_inference(*, organization_id: int, reference: str, source_key: str, device_class: str, device_count: int,
                     started_at: datetime, ended_at: datetime) -> None:
    """Meter one inference request's worker time (serving's worker, in the transaction that finishes the
    request). `reference` names the request once: a second call for it bills nothing more. One
    INSERT … ON CONFLICT DO NOTHING (not get_or_create's select, savepoint, insert): this runs on every
    try-it call, inside its latency."""
    seconds = Decimal(max(0.0, (ended_at - started_at).total_seconds())).quantize(Decimal("0.001"))
    InferenceUsage.objects.bulk_create([InferenceUsage(
        reference=reference[:100], organization_id=organization_id, source_key=source_key[:200],
        device_class=device_class, device_count=device_count, started_at=started_at, ended_at=ended_at,
        seconds=seconds)], ignore_conflicts=True)


def exclude_lost_work(*, job, attempt: int, after: datetime | None, reason: str) -> int:
    """Call inside the transaction that takes the job from its lost worker. The
    attempt's usage that ended after `after` — the time of the checkpoint the
    next attempt resumes from (jobs passes its last *step* checkpoint; None when
    there is none, so all of it) — is redone or lost, so it is never billed.
    Segments already rolled up or excluded are left alone. How many were excluded."""
    segments = UsageSegment.objects.filter(job_id=job.pk, attempt=attempt, ledger_entry__isnull=True,
                                           exclusion__isnull=True)
    if after is not None:
        segments = segments.filter(ended_at__gt=after)
    excluded = [UsageExclusion(segment=s, reason=reason) for s in segments]
    UsageExclusion.objects.bulk_create(excluded)
    return len(excluded)


# --- reads for jobs and the dashboard -------------------------------------------------------

def with_job_usage(jobs: QuerySet) -> QuerySet:
    """A queryset of jobs, each annotated with its seconds: `billed_seconds`
    (billable: not excluded as work lost to infrastructure; the open attempt's
    included), `excluded_seconds` (not billed) and `running_seconds` (the open
    attempt's, not yet in the ledger)."""
    seconds = "usage_segments__seconds"
    return jobs.annotate(
        billed_seconds=Sum(seconds, filter=Q(usage_segments__exclusion__isnull=True)),
        excluded_seconds=Sum(seconds, filter=Q(usage_segments__exclusion__isnull=False)),
        running_seconds=Sum(seconds, filter=Q(state=RUNNING, usage_segments__lease_token=F("lease_token"),
                                              usage_segments__exclusion__isnull=True)))


def job_seconds(*, job) -> Decimal:
    """All the job's metered seconds, billable or not (with_job_usage splits them)."""
    return UsageSegment.objects.filter(job_id=job.pk).aggregate(total=Sum("seconds"))["total"] or Decimal("0")


def open_attempt_usage(*, organization) -> dict[int, float]:
    """Seconds metered so far by the organization's running attempts (job id →
    seconds), for pages that mark usage still running (the Billing page)."""
    rows = (UsageSegment.objects.filter(organization=organization, job__state=RUNNING,
                                        lease_token=F("job__lease_token"), exclusion__isnull=True)
            .values("job_id").annotate(seconds=Sum("seconds")))
    return {row["job_id"]: float(row["seconds"]) for row in rows}


def job_spent_micros(*, job, usd_per_second: Decimal) -> int:
    """What the job has cost so far, in micro-dollars: its billable ledger
    entries, plus its billable usage not rolled up yet priced at `usd_per_second`
    (the attempt's rate, for the per-job budget)."""
    ledger = LedgerEntry.objects.filter(job_id=job.pk, billable=True).aggregate(total=Sum("amount_micros"))["total"] or 0
    unrolled = (UsageSegment.objects.filter(job_id=job.pk, ledger_entry__isnull=True, exclusion__isnull=True)
                .values_list("seconds", "device_count"))
    return ledger + sum(amount_micros(seconds=s, device_count=n, usd_per_second=usd_per_second) for s, n in unrolled)
