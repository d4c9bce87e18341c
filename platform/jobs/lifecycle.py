"""A job's life after submission: claim under a lease, heartbeat (usage),
finish, cancel, and the reaper's and sweeper's take-overs. Every write a worker
makes goes through a *fenced* update — `filter(pk=..., lease_token=token,
state=running)` — so a worker whose lease was taken over changes nothing and
bills nothing."""
from __future__ import annotations

import logging
import uuid
from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from billing import metering
from core.errors import Conflict, NotFound
from tenancy.actors import Actor
from tenancy.entitlements import entitlements_for
from tenancy.models import Organization

from . import fleet
from .models import FINETUNE_KINDS, TERMINAL_STATES, Job, JobCheckpoint, JobEvent, JobState

logger = logging.getLogger(__name__)


def dispatch(*, job_id: int) -> None:
    """Ring the doorbell. Losing it is harmless: the sweeper rings again. The
    task is rung by its registered name, so services never import tasks (the
    thin tasks import services)."""
    job = Job.objects.filter(pk=job_id, state=JobState.QUEUED).first()
    if job is None:
        return
    try:
        current_app.send_task("jobs.tasks.run_job", args=[job.pk], queue=fleet.routed_queue(job), priority=job.priority)
    except Exception:
        logger.exception("Doorbell for job %s failed; the sweeper will retry", job_id)
        return
    Job.objects.filter(pk=job_id).update(last_dispatched_at=timezone.now())


def job_claim(*, job_id: int, worker: str, device_class: str) -> tuple[Job, uuid.UUID] | None:
    """queued → running under a new lease, if nobody else has it, the worker may take it (its device class,
    not draining: fleet.claim_refusal) and the organization is under its concurrency limit. None means: not yours."""
    token, now = uuid.uuid4(), timezone.now()
    with transaction.atomic():
        job = Job.objects.filter(pk=job_id, state=JobState.QUEUED).select_related("organization").first()
        if job is None:
            return None
        refusal = fleet.claim_refusal(job=job, worker=worker, device_class=device_class)
        if refusal:
            logger.info("Job %s not claimed: %s", job_id, refusal)
            return None
        Organization.objects.select_for_update().get(pk=job.organization_id)  # serializes the limit check
        entitlements = entitlements_for(organization=job.organization)  # once per claim
        limit = min(entitlements.max_concurrent_jobs, settings.LATHE_MAX_CONCURRENT_JOBS)
        running = Job.objects.filter(organization_id=job.organization_id, state=JobState.RUNNING).count()
        if running >= limit:
            JobEvent.objects.create(job=job, message=f"Waiting: the organization already runs {running} job(s).")
            return None
        claimed = Job.objects.filter(pk=job_id, state=JobState.QUEUED, cancel_requested_at__isnull=True).update(
            state=JobState.RUNNING, lease_token=token, lease_expires_at=now + timedelta(seconds=settings.LATHE_JOB_LEASE_SECONDS),
            heartbeat_at=now, attempts=F("attempts") + 1, worker=worker, device_class=device_class,
            started_at=now, updated_at=now, progress_at=None, step_seconds=None,
        )
        if not claimed:
            return None
        job.refresh_from_db()
        JobEvent.objects.create(job=job, attempt=job.attempts, message=f"Attempt {job.attempts} started on {worker} ({device_class}).")
    return job, token


def fenced(job_id: int, token):
    """The job, only while `token` holds its lease: every worker write goes through this."""
    return Job.objects.filter(pk=job_id, lease_token=token, state=JobState.RUNNING)


def record_usage(*, job: Job, token, started_at, ended_at, device_class: str, device_count: int = 1) -> bool:
    """Extend the lease and meter the interval (billing.metering.record_segment),
    atomically and only under the current lease. False: the lease is gone; stop
    and bill nothing more."""
    now = timezone.now()
    with transaction.atomic():
        extended = fenced(job.pk, token).update(
            heartbeat_at=now, lease_expires_at=now + timedelta(seconds=settings.LATHE_JOB_LEASE_SECONDS), updated_at=now)
        if not extended:
            return False
        metering.record_segment(job=job, lease_token=token, attempt=job.attempts, device_class=device_class,
                                device_count=device_count, started_at=started_at, ended_at=ended_at)
    return True


def job_finish(*, job: Job, token, state: str, result: dict | None = None, failure_reason: str = "",
               usage: dict | None = None) -> bool:
    """The last usage segment, the result and the final state commit together."""
    now = timezone.now()
    with transaction.atomic():
        if usage and not record_usage(job=job, token=token, **usage):
            return False
        if state == JobState.PAUSED:
            # Not an end: no finished_at, no failure; the attempt it used is given back (a pause is no failure).
            done = fenced(job.pk, token).update(state=state, lease_token=None, lease_expires_at=None, worker="",
                                                 result=result or {}, max_attempts=F("max_attempts") + 1, updated_at=now)
            if done:
                JobEvent.objects.create(job=job, attempt=job.attempts, message=f"Job paused. {failure_reason}".strip())
            return bool(done)
        done = fenced(job.pk, token).update(state=state, finished_at=now, lease_token=None, lease_expires_at=None,
                                             result=result or {}, failure_reason=failure_reason[:5000], updated_at=now)
        if done:
            level = "error" if state == JobState.FAILED else "info"
            JobEvent.objects.create(job=job, attempt=job.attempts, level=level,
                                    message=f"Job {state}." + (f" {failure_reason}" if failure_reason else ""))
    return bool(done)


def job_cancel(*, organization: Organization, actor: Actor | None, job_id) -> Job:
    job = Job.objects.filter(organization=organization, pk=job_id).first()
    if job is None:
        raise NotFound("Job not found.")
    if job.is_terminal:
        raise Conflict(f"The job already ended ({job.state}).", code="job_finished")
    now = timezone.now()
    with transaction.atomic():
        # A queued job never starts, a paused one never resumes: cancel it outright.
        if Job.objects.filter(pk=job.pk, state__in=(JobState.QUEUED, JobState.PAUSED)).update(
                state=JobState.CANCELLED, cancel_requested_at=now, finished_at=now, updated_at=now):
            JobEvent.objects.create(job=job, attempt=job.attempts, message="Cancelled while paused; its checkpoints are kept."
                                    if job.state == JobState.PAUSED else "Cancelled before it started.")
        else:  # running: a flag the worker reads between optimizer steps
            Job.objects.filter(pk=job.pk, cancel_requested_at__isnull=True).update(cancel_requested_at=now, updated_at=now)
            JobEvent.objects.create(job=job, attempt=job.attempts, level="warning", message="Cancellation requested.")
    job.refresh_from_db()
    return job


def job_pause(*, organization: Organization, actor: Actor | None, job_id) -> Job:
    """A queued job is paused at once; a running one is asked to stop at its next
    step: it checkpoints, releases its lease (billing stops) and becomes paused."""
    job = Job.objects.filter(organization=organization, pk=job_id).first()
    if job is None:
        raise NotFound("Job not found.")
    if job.is_terminal:
        raise Conflict(f"The job already ended ({job.state}).", code="job_finished")
    if job.state == JobState.PAUSED:
        raise Conflict("The job is already paused.", code="job_paused")
    if job.kind not in FINETUNE_KINDS:
        raise Conflict("Only fine-tuning jobs can be paused (they resume from a checkpoint); cancel this one instead.",
                       code="pause_unsupported")
    if job.cancel_requested_at is not None:
        raise Conflict("The job is being cancelled.", code="job_cancelling")
    if job.pause_requested_at is not None and job.state == JobState.RUNNING:
        raise Conflict("The job is already pausing: it stops at its next step.", code="job_pausing")
    now = timezone.now()
    with transaction.atomic():
        if Job.objects.filter(pk=job.pk, state=JobState.QUEUED).update(state=JobState.PAUSED, pause_requested_at=now,
                                                                      updated_at=now):
            JobEvent.objects.create(job=job, attempt=job.attempts, message="Paused before it started.")
        elif Job.objects.filter(pk=job.pk, state=JobState.RUNNING, pause_requested_at__isnull=True).update(
                pause_requested_at=now, updated_at=now):  # a flag the worker reads between optimizer steps
            JobEvent.objects.create(job=job, attempt=job.attempts, message="Pause requested: the job stops at its next "
                                                                           "step and keeps a checkpoint.")
        else:
            job.refresh_from_db()
            raise Conflict(f"The job changed meanwhile ({job.state}); try again.", code="job_changed")
    job.refresh_from_db()
    return job


def job_resume(*, organization: Organization, actor: Actor | None, job_id) -> Job:
    """paused → queued, dispatched again; the next attempt resumes from the last checkpoint."""
    job = Job.objects.filter(organization=organization, pk=job_id).first()
    if job is None:
        raise NotFound("Job not found.")
    if job.state != JobState.PAUSED:
        raise Conflict(f"Only a paused job can be resumed (this one is {job.state}).", code="job_not_paused")
    now = timezone.now()
    with transaction.atomic():
        if not Job.objects.filter(pk=job.pk, state=JobState.PAUSED).update(
                state=JobState.QUEUED, pause_requested_at=None, queued_at=now, updated_at=now):
            raise Conflict("The job changed meanwhile; try again.", code="job_changed")
        JobEvent.objects.create(job=job, attempt=job.attempts, message="Resumed: queued to continue from its last checkpoint."
                                if job.attempts else "Resumed: queued.")
        transaction.on_commit(lambda: dispatch(job_id=job.pk))
    job.refresh_from_db()
    return job


def stall_limit(*, step_seconds: float | None) -> timedelta | None:
    """How long an attempt may go without its step advancing: a bounded multiple
    of its own step time, never under the floor. None until a step time is measured
    (setup, compression phases without steps: the lease alone watches those)."""
    if not step_seconds:
        return None
    return timedelta(seconds=max(settings.LATHE_JOB_STALL_STEP_MULTIPLE * step_seconds, settings.LATHE_JOB_STALL_MIN_SECONDS))


def _stalled(now) -> list[tuple[Job, str]]:
    """Running jobs whose lease is live (the heartbeat thread works) but whose
    step has not advanced for longer than their stall limit (the training hangs)."""
    floor = now - timedelta(seconds=settings.LATHE_JOB_STALL_MIN_SECONDS)
    candidates = Job.objects.filter(state=JobState.RUNNING, lease_expires_at__gte=now, step_seconds__isnull=False,
                                    progress_at__lt=floor)
    stalled = []
    for job in candidates:
        limit = stall_limit(step_seconds=job.step_seconds)
        if now - job.progress_at > limit:
            stalled.append((job, f"no progress for {int((now - job.progress_at).total_seconds() // 60)} min at step "
                                 f"{job.step} (limit {int(limit.total_seconds() // 60)} min: "
                                 f"{settings.LATHE_JOB_STALL_STEP_MULTIPLE} × its {job.step_seconds:.2f} s step time, "
                                 f"at least {settings.LATHE_JOB_STALL_MIN_SECONDS // 60} min)"))
    return stalled


def _take_over(job: Job, *, now, why: str, still: dict, outcome: dict) -> None:
    """Take the job from its attempt (`still`: the conditions it was chosen on,
    re-checked in the update). A pending cancel ends it cancelled; else re-queued
    while attempts are left, else failed. The lost attempt's usage after the
    checkpoint the next attempt resumes from is excluded in the same transaction."""
    with transaction.atomic():
        taken_from = fenced(job.pk, job.lease_token).filter(**still)
        released = dict(lease_token=None, lease_expires_at=None, worker="", updated_at=now)
        if job.cancel_requested_at is not None:
            kind = "cancelled"
            taken = taken_from.update(state=JobState.CANCELLED, finished_at=now, **released,
                                      failure_reason=f"Cancelled; the worker was lost before it could stop ({why}). "
                                                     "The best checkpoint is kept.")
        elif job.pause_requested_at is not None:
            kind = "paused"  # resumed later from the last checkpoint; the lost attempt is given back
            taken = taken_from.update(state=JobState.PAUSED, max_attempts=F("max_attempts") + 1, **released)
        elif job.attempts < job.max_attempts:
            kind = "requeued"
            # A cancel landing meanwhile is not re-queued: the sweep below ends it.
            taken = taken_from.update(state=JobState.QUEUED, queued_at=now, **released)
        else:
            kind = "failed"
            taken = taken_from.update(state=JobState.FAILED, finished_at=now, **released,
                                      failure_reason=f"Worker lost {job.attempts} times (last: {why}).")
        if not taken:
            return  # it heartbeated or progressed meanwhile, or finished
        excluded = metering.exclude_lost_work(
            job=job, attempt=job.attempts, after=resume_point(job=job, attempt=job.attempts),
            reason=f"attempt {job.attempts}: worker lost; work after its last checkpoint not billed")
        unbilled = f" {excluded} usage segment(s) after the last checkpoint are not billed." if excluded else ""
        message, level = {
            "cancelled": ("Cancelled: the cancellation was pending when the worker was lost", "warning"),
            "requeued": ("Re-queued to resume from the last checkpoint", "warning"),
            "paused": ("Paused: the pause was pending; resume continues from the last checkpoint", "warning"),
            "failed": ("Failed: attempts exhausted after lost workers", "error"),
        }[kind]
        JobEvent.objects.create(job=job, attempt=job.attempts, level=level, message=f"Worker lost ({why}). {message}.{unbilled}")
        outcome.setdefault(kind, []).append(job.pk)
        if kind == "requeued":
            transaction.on_commit(lambda pk=job.pk: dispatch(job_id=pk))


def resume_point(*, job: Job, attempt: int):
    """When the checkpoint the next attempt resumes from was saved: the attempt's
    last *step* checkpoint (workers.checkpoints.latest_checkpoint). A best-model
    save is not a resume point (the epoch-end step checkpoint may have been
    skipped at that very step), so work after it is redone. None: no checkpoint."""
    return (JobCheckpoint.objects.filter(job=job, attempt=attempt, is_best=False).order_by("-created_at")
            .values_list("created_at", flat=True).first())


def reap_expired_leases() -> dict:
    """The reaper (maintenance queue). Takes jobs from lost attempts — lease
    expired (no heartbeat), or live lease but no progress (the watchdog) — and
    ends queued jobs whose cancel is pending (a cancel that raced a re-queue),
    which neither the claim nor the sweeper would ever pick up."""
    now = timezone.now()
    outcome: dict[str, list[int]] = {"requeued": [], "failed": [], "cancelled": []}  # and "paused", if any
    for job in Job.objects.filter(state=JobState.RUNNING, lease_expires_at__lt=now).order_by("lease_expires_at", "id"):
        last = f"no heartbeat since {job.heartbeat_at:%Y-%m-%d %H:%M:%S} UTC" if job.heartbeat_at else "no heartbeat"
        _take_over(job, now=now, why=last, still={"lease_expires_at__lt": now}, outcome=outcome)
    for job, why in _stalled(now):
        _take_over(job, now=now, why=why, still={"progress_at": job.progress_at}, outcome=outcome)
    for job in Job.objects.filter(state=JobState.QUEUED, cancel_requested_at__isnull=False):
        with transaction.atomic():
            if Job.objects.filter(pk=job.pk, state=JobState.QUEUED, cancel_requested_at__isnull=False).update(
                    state=JobState.CANCELLED, finished_at=now, updated_at=now):
                JobEvent.objects.create(job=job, attempt=job.attempts, level="warning",
                                        message="Cancelled: the cancellation was pending when the job was re-queued.")
                outcome["cancelled"].append(job.pk)
    return outcome


def sweep_lost_doorbells() -> list[int]:
    """Queued jobs nobody picked up (a lost message, a Redis restart): ring
    again, oldest first (those waited longest)."""
    cutoff = timezone.now() - timedelta(seconds=settings.LATHE_REDISPATCH_AFTER_SECONDS)
    stale = list(Job.objects.filter(state=JobState.QUEUED, cancel_requested_at__isnull=True)
                 .exclude(last_dispatched_at__gt=cutoff).order_by("queued_at", "id").values_list("pk", flat=True))
    for pk in stale:
        dispatch(job_id=pk)
    return stale


def job_requeue(*, job: Job, reason: str) -> bool:
    """Operators: put a failed or cancelled job back in the queue (new attempts)."""
    if job.state not in TERMINAL_STATES:
        return False
    updated = Job.objects.filter(pk=job.pk, state=job.state).update(
        state=JobState.QUEUED, attempts=0, cancel_requested_at=None, pause_requested_at=None, finished_at=None, failure_reason="",
        queued_at=timezone.now(), updated_at=timezone.now())
    if updated:
        JobEvent.objects.create(job=job, message=f"Re-queued by an operator: {reason}.")
        transaction.on_commit(lambda: dispatch(job_id=job.pk))
    return bool(updated)
