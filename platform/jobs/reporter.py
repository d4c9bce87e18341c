"""The worker's side of a job talking back: `JobReporter` implements
workers.reporting.Reporter over the ORM, every write fenced by the lease; a
heartbeat thread extends the lease and meters usage; the spend watch stops a
job at its budget or the organization's cap.

The database may vanish for a while (a restart, a failover, a network cut):
every write-back goes through `with_db_retry`, which reconnects and retries for
as long as the lease could still be ours."""
from __future__ import annotations

import logging
import os
import statistics
import threading
import time
from collections import deque
from decimal import Decimal

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from billing import metering
from billing import services as billing
from tenancy.entitlements import entitlements_for

from . import checkpoint_store, lifecycle
from .models import Job, JobArtifact, JobCheckpoint, JobEvent, JobMetric

from .staging import job_folder

logger = logging.getLogger(__name__)
PROGRESS_WRITE_INTERVAL = 1.0
STEP_TIME_SAMPLES = 50  # the watchdog's step time: the median of the last ones
# The connection itself failed (server gone, session ended, network cut, SQLite
# busy): worth a fresh connection. Integrity and programming errors are not.
TRANSIENT_DB_ERRORS = (OperationalError, InterfaceError)


def with_db_retry(fn, *, what: str, job_id, within: float | None = None, stop: threading.Event | None = None):
    """`fn()`, again on a fresh connection after a transient database error,
    with backoff, for up to `within` seconds (default: the lease, past which
    the job is the reaper's anyway); then the error propagates. `stop` cuts the
    wait short. Never used inside a transaction (its work would be lost)."""
    if connection.in_atomic_block:
        return fn()
    deadline = time.monotonic() + (settings.LATHE_JOB_LEASE_SECONDS if within is None else within)
    delay = 0.2
    while True:
        try:
            return fn()
        except TRANSIENT_DB_ERRORS:
            try:
                connection.close()
            except DatabaseError:
                pass  # already dead: the next query connects afresh
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (stop is not None and stop.is_set()):
                logger.warning("Job %s: %s failed on a database error; not retried", job_id, what, exc_info=True)
                raise
            logger.warning("Job %s: %s failed on a database error; retrying in %.1f s", job_id, what,
                           min(delay, remaining), exc_info=True)
            if stop is not None:
                stop.wait(min(delay, remaining))
            else:
                time.sleep(min(delay, remaining))
            delay = min(delay * 2, 5.0)


class JobReporter:
    """workers.reporting.Reporter over the ORM, fenced by (job, lease token)."""

    def __init__(self, job: Job, token, device_class: str, device_count: int = 1):
        self.job, self.token, self.device_class, self.device_count = job, token, device_class, device_count
        self.lease_lost, self.cancel_requested, self.pause_requested = threading.Event(), threading.Event(), threading.Event()
        self._stop_heartbeat = threading.Event()
        self._segment_start = timezone.now()
        self._segment_lock = threading.Lock()
        self._last_progress = 0.0
        self._last_step: int | None = None
        self._step_times: deque[float] = deque(maxlen=STEP_TIME_SAMPLES)
        self._thread = threading.Thread(target=self._heartbeat_loop, name=f"heartbeat-job-{job.pk}", daemon=True)
        self.budget_reason: str | None = None
        self._spend = _SpendWatch(job, device_class, device_count)

    # --- lease and usage ---------------------------------------------------------
    def start(self) -> None:
        # A cancel or pause asked between the claim and the first beat is seen before the first step.
        try:
            self._retry(self._read_flags, "cancel/pause check", within=0)
        except TRANSIENT_DB_ERRORS:
            pass  # the first beat checks again
        self._thread.start()

    def _read_flags(self) -> None:
        flags = Job.objects.filter(pk=self.job.pk).values("cancel_requested_at", "pause_requested_at").first() or {}
        if flags.get("cancel_requested_at") is not None:
            self.cancel_requested.set()
        if flags.get("pause_requested_at") is not None:
            self.pause_requested.set()

    def _heartbeat_loop(self) -> None:
        try:
            while not self._stop_heartbeat.wait(settings.LATHE_JOB_HEARTBEAT_SECONDS):
                if not self.heartbeat():
                    return
        finally:
            connection.close()

    def _retry(self, fn, what: str, **kwargs):
        return with_db_retry(fn, what=what, job_id=self.job.pk, **kwargs)

    def heartbeat(self) -> bool:
        with self._segment_lock:
            if self.lease_lost.is_set():
                return False
            ended = timezone.now()
            try:  # one try a beat: while the database is away, the next beat's segment covers this interval too
                extended = self._retry(lambda: lifecycle.record_usage(
                    job=self.job, token=self.token, started_at=self._segment_start, ended_at=ended,
                    device_class=self.device_class, device_count=self.device_count), "heartbeat", within=0)
            except TRANSIENT_DB_ERRORS:
                return True
            if not extended:
                self.lease_lost.set()
                logger.warning("Job %s: lease lost; stopping without billing further", self.job.pk)
                return False
            seconds = (ended - self._segment_start).total_seconds()
            self._segment_start = ended

        def checks():
            self._read_flags()
            self.budget_reason = self.budget_reason or self._spend.after(seconds)
        try:
            self._retry(checks, "cancel/pause/budget check", within=0)
        except TRANSIENT_DB_ERRORS:
            pass  # the next beat checks again
        return True

    def stop(self) -> dict:
        """Stop heartbeating; the still-open usage segment, for job_finish."""
        self._stop_heartbeat.set()
        self._thread.join(timeout=30)
        with self._segment_lock:
            return {"started_at": self._segment_start, "ended_at": timezone.now(), "device_class": self.device_class,
                    "device_count": self.device_count}

    def _fenced_write(self, create, what: str) -> bool:
        def write() -> bool:
            with transaction.atomic():
                if not lifecycle.fenced(self.job.pk, self.token).update(updated_at=timezone.now()):
                    self.lease_lost.set()
                    return False
                create()
            return True
        return self._retry(write, what)

    # --- Reporter ------------------------------------------------------------------
    def progress(self, *, step, total_steps, epoch):
        now = time.monotonic()
        if now - self._last_progress < PROGRESS_WRITE_INTERVAL and step != total_steps:
            return
        if self._last_step is not None and step > self._last_step:
            self._step_times.append((now - self._last_progress) / (step - self._last_step))
        elif self._last_step is not None and step < self._last_step:
            self._step_times.clear()  # a new phase counts its own steps (compression): measure afresh
        self._last_progress, self._last_step = now, step
        step_seconds = statistics.median(self._step_times) if self._step_times else None
        updated = self._retry(lambda: lifecycle.fenced(self.job.pk, self.token).update(
            step=step, total_steps=total_steps, epoch=epoch, progress_at=timezone.now(), step_seconds=step_seconds),
            "progress")
        if not updated:
            self.lease_lost.set()

    def metrics(self, *, step, epoch, values):
        def create():
            JobMetric.objects.create(job=self.job, step=step, epoch=epoch, values=values)
            merged = {**Job.objects.get(pk=self.job.pk).latest_metrics, **values}
            Job.objects.filter(pk=self.job.pk).update(latest_metrics=merged)
        self._fenced_write(create, "metrics")

    def event(self, *, level, message):
        self._fenced_write(lambda: JobEvent.objects.create(job=self.job, attempt=self.job.attempts, level=level,
                                                           message=message), "event")

    def checkpoint_saved(self, *, step, path, metrics, is_best):
        if checkpoint_store.enabled() and not self.lease_lost.is_set():
            # Durable first: the row (the resume point) is written once the copy in storage is whole.
            try:
                path = checkpoint_store.store(self.job, checkpoint_dir=str(job_folder(self.job) / "checkpoints"), path=path)
            except Exception:  # storage down: this checkpoint does not count; training goes on to the next one
                logger.warning("Job %s: checkpoint at step %s not stored", self.job.pk, step, exc_info=True)
                return
        self._fenced_write(lambda: JobCheckpoint.objects.create(job=self.job, attempt=self.job.attempts, step=step, path=path,
                                                               is_best=is_best, metrics=metrics), "checkpoint")

    def artifact(self, *, name, path, kind):
        import hashlib

        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        with open(path, "rb") as fh:
            stored = default_storage.save(f"jobs/{self.job.organization_id}/{self.job.pk}/{self.job.attempts}/{name}", File(fh))
        ok = False
        try:
            ok = self._fenced_write(lambda: JobArtifact.objects.update_or_create(
                job=self.job, name=name, defaults={"organization_id": self.job.organization_id, "kind": kind,
                                                   "storage_name": stored, "size_bytes": os.path.getsize(path),
                                                   "sha256": digest.hexdigest()}), "artifact")
        finally:
            if not ok:
                default_storage.delete(stored)

    def confirm_lease(self) -> bool:
        if self.lease_lost.is_set():
            return False
        if not self._retry(lambda: lifecycle.fenced(self.job.pk, self.token).exists(), "lease check"):
            self.lease_lost.set()
            return False
        return True

    def should_stop(self):
        if self.lease_lost.is_set():
            return "lease lost"
        if self.cancel_requested.is_set():
            return "cancelled"
        return self.budget_reason or ("paused" if self.pause_requested.is_set() else None)


class _SpendWatch:
    """The job's budget (`max_cost`) and the organization's spend cap, checked
    after each heartbeat's usage is recorded: a reason to stop, or None. The
    entitlements (the rates) are read once, when the attempt starts; the cap
    itself is billing's to check each beat (billing.services.spend_capped)."""

    def __init__(self, job: Job, device_class: str, device_count: int):
        self.job, self.device_count = job, device_count
        self.entitlements = entitlements_for(organization=job.organization)  # once per attempt
        self.rate = self.entitlements.rate_for(device_class)
        self.job_micros = metering.job_spent_micros(job=job, usd_per_second=self.rate)

    def after(self, seconds: float) -> str | None:
        self.job_micros += billing.amount_micros(seconds=Decimal(str(round(seconds, 3))), device_count=self.device_count,
                                                 usd_per_second=self.rate)
        if self.job.max_cost is not None and self.job_micros >= int(self.job.max_cost * 1_000_000):
            return "budget"
        if billing.spend_capped(organization=self.job.organization, entitlements=self.entitlements):
            return "spend cap"
        return None
