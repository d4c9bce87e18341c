"""Runs a claimed job: prepares files, runs `workers.finetune` with a reporter
whose every write is fenced by the lease, heartbeats (extending the lease and
metering usage) from a thread, and commits the outcome.

The database may vanish for a while (a restart, a failover, a network cut):
every write-back goes through `db_retry`, which reconnects and retries for as
long as the lease could still be ours; if the attempt dies anyway, its
heartbeat dies with it, so the reaper takes the job over."""
from __future__ import annotations

import logging
import os
import shutil
import statistics
import threading
import time
import traceback
from collections import deque
from pathlib import Path

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import DatabaseError, InterfaceError, OperationalError, connection, transaction
from django.utils import timezone

from workers.devices import device_class as detect_device_class
from workers.finetune import run_finetune
from workers.kinds import strict
from workers.spec import FineTuneSpec

from . import estimates, lifecycle
from .cards import card_facts
from .models import Job, JobArtifact, JobCheckpoint, JobEvent, JobKind, JobMetric, JobState

logger = logging.getLogger(__name__)
PROGRESS_WRITE_INTERVAL = 1.0
STEP_TIME_SAMPLES = 50  # the watchdog's step time: the median of the last ones
# The connection itself failed (server gone, session ended, network cut, SQLite
# busy): worth a fresh connection. Integrity and programming errors are not.
TRANSIENT_DB_ERRORS = (OperationalError, InterfaceError)


def db_retry(fn, *, what: str, job_id, within: float | None = None, stop: threading.Event | None = None):
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
        self.lease_lost, self.cancel_requested = threading.Event(), threading.Event()
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
        self._thread.start()

    def _heartbeat_loop(self) -> None:
        try:
            while not self._stop_heartbeat.wait(settings.LATHE_JOB_HEARTBEAT_SECONDS):
                if not self.heartbeat():
                    return
        finally:
            connection.close()

    def _retry(self, fn, what: str, **kwargs):
        return db_retry(fn, what=what, job_id=self.job.pk, **kwargs)

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
            if Job.objects.filter(pk=self.job.pk, cancel_requested_at__isnull=False).exists():
                self.cancel_requested.set()
            self.budget_reason = self.budget_reason or self._spend.after(seconds)
        try:
            self._retry(checks, "cancel/budget check", within=0)
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
        return self.budget_reason


class _SpendWatch:
    """The job's budget (`max_cost`) and the organization's spend cap, checked
    after each heartbeat's usage is recorded: a reason to stop, or None."""

    def __init__(self, job: Job, device_class: str, device_count: int):
        from billing import services as billing

        self.job, self.device_count = job, device_count
        self.rate = billing.plan_for(organization=job.organization).rate_for(device_class)
        spent = job.ledger_entries.filter(billable=True).values_list("amount_micros", flat=True)
        unrolled = job.usage_segments.filter(ledger_entry__isnull=True, exclusion__isnull=True).values_list("seconds", "device_count")
        self.job_micros = sum(spent) + sum(billing.amount_micros(seconds=s, device_count=n, usd_per_second=self.rate)
                                           for s, n in unrolled)

    def after(self, seconds: float) -> str | None:
        from decimal import Decimal

        from billing import services as billing

        self.job_micros += billing.amount_micros(seconds=Decimal(str(round(seconds, 3))), device_count=self.device_count,
                                                 usd_per_second=self.rate)
        if self.job.max_cost is not None and self.job_micros >= int(self.job.max_cost * 1_000_000):
            return "budget"
        if billing.period_usage(organization=self.job.organization).is_capped:
            return "spend cap"
        return None


STOP_REASONS = {
    "cancelled": "Cancelled while running; the best checkpoint is kept.",
    "budget": "Stopped at its budget of ${max_cost} (max_cost); the best checkpoint is kept.",
    "spend cap": "Stopped: the organization's monthly spend cap (or free allowance) is reached; the best checkpoint is kept.",
}


def stop_message(job: Job, reason: str) -> str:
    return STOP_REASONS[reason].replace("{max_cost}", f"{job.max_cost:.2f}" if job.max_cost is not None else "?")


def job_folder(job: Job) -> Path:
    return Path(settings.LATHE_CHECKPOINT_ROOT) / str(job.organization_id) / str(job.pk)


def fetch_dataset(job: Job, folder: Path) -> tuple[Path, Path]:
    """The dataset version's normalized train/validation files, copied next to the job once."""
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    version = job.dataset_version
    paths = (data / "train.jsonl", data / "validation.jsonl")
    for source, target in zip((version.train_file, version.validation_file), paths):
        if not target.exists():
            with default_storage.open(source, "rb") as src, open(f"{target}.tmp", "wb") as dst:
                shutil.copyfileobj(src, dst)
            os.replace(f"{target}.tmp", target)
    return paths


def build_spec(job: Job, folder: Path) -> FineTuneSpec:
    train_file, validation_file = fetch_dataset(job, folder)
    # Strict: the stored spec (resolved hyperparameters) is rebuilt as it is; an unknown key is an error.
    return strict(
        FineTuneSpec, job.spec,
        task=job.dataset_version.task, base_model_path=job.base_model.local_path(), train_file=str(train_file),
        validation_file=str(validation_file), labels=list(job.labels),
        output_dir=str(folder / "output" / f"attempt-{job.attempts}"), checkpoint_dir=str(folder / "checkpoints"),
        method=job.method, torch_threads=settings.LATHE_WORKER_THREADS or None,
        checkpoint_every_steps=settings.LATHE_CHECKPOINT_EVERY_STEPS, card=card_facts(job),
    )


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


# Each kind returns (state, result, failure reason); state None means the lease
# was lost: someone else owns the job now, so nothing is written.

def run_finetune_job(job: Job, reporter: JobReporter) -> tuple[str | None, dict, str]:
    outcome = run_finetune(build_spec(job, job_folder(job)), reporter)
    result = {"best_metrics": outcome.best_metrics, "history": outcome.history, "global_step": outcome.global_step,
              "total_steps": outcome.total_steps, "train_seconds": round(outcome.train_seconds, 3),
              "train_tokens": outcome.train_tokens,
              "examples_per_second": round(outcome.train_examples_seen / outcome.train_seconds, 2) if outcome.train_seconds else None,
              "device": outcome.device, "precision": outcome.precision}
    if outcome.status == "succeeded":
        return JobState.SUCCEEDED, result, ""
    if outcome.stop_reason in STOP_REASONS:
        return JobState.CANCELLED, {**result, "stop_reason": outcome.stop_reason}, stop_message(job, outcome.stop_reason)
    return None, result, ""


def run_compression_job(job: Job, reporter: JobReporter) -> tuple[str | None, dict, str]:
    from workers.compression.run import CompressionSpec, run_compression

    folder = job_folder(job)
    train_file, validation_file = fetch_dataset(job, folder)
    # Strict: the stored spec (the kind's declared options, its training phase) is rebuilt as it is.
    stored = dict(job.spec)
    if stored.pop("student_base_model", None):  # resolved by the platform into the catalog model's files
        stored["student_model_path"] = job.base_model.local_path()
    if job.max_accuracy_drop is not None:  # the job's column is the guard (the spec holds the same at submission)
        stored["max_accuracy_drop"] = job.max_accuracy_drop
    report = run_compression(strict(
        CompressionSpec, stored,
        kind=job.kind, source_model_dir=str(extract_model(job, folder)), eval_file=str(validation_file),
        train_file=str(train_file), output_dir=str(folder / "output" / f"attempt-{job.attempts}"),
        checkpoint_dir=str(folder / "checkpoints"), task=job.dataset_version.task,
        max_length=estimates.model_max_length(job),
        threads=settings.LATHE_WORKER_THREADS or None, card=card_facts(job)), reporter)
    if "stopped" in report:
        reason = report["stopped"]
        return (JobState.CANCELLED, {"stop_reason": reason}, stop_message(job, reason)) if reason in STOP_REASONS else (None, {}, "")
    guard = report["guard"]
    if not guard["passed"]:
        return JobState.FAILED, {"compression": report}, (
            f"Accuracy guard failed: accuracy dropped {guard['accuracy_drop_points']} points, more than the "
            f"{guard['max_accuracy_drop_points']} allowed. The compressed model is kept for inspection.")
    return JobState.SUCCEEDED, {"compression": report}, ""


def run_claimed_job(job: Job, token) -> str:
    """The attempt under `token`: run it, then commit its outcome. The heartbeat
    lives exactly as long as the attempt (try/finally). An attempt that dies on a
    database outage outlasting the retries commits nothing: its lease runs out and
    the reaper re-queues it to resume from its last checkpoint."""
    if connection.in_atomic_block:
        # A run outlasts its lease: inside a transaction, its writes would be invisible to the
        # heartbeat's own connection, and the server ends the idle session (idle_in_transaction_session_timeout).
        raise RuntimeError("run_claimed_job must not run inside a transaction (it runs for longer than a lease).")
    device_class, device_count = detect_device_class()
    attempt_started = time.monotonic()  # the attempt's metered time starts with its reporter
    reporter = JobReporter(job, token, device_class, device_count)
    reporter.start()
    run = run_finetune_job if job.kind == JobKind.FINETUNE else run_compression_job
    try:
        try:
            state, result, reason = run(job, reporter)
        except TRANSIENT_DB_ERRORS:
            logger.exception("Job %s: the database stayed unreachable; leaving the attempt to the reaper", job.pk)
            return "database unreachable"
        except Exception as exc:
            logger.exception("Job %s failed", job.pk)
            state, result, reason = JobState.FAILED, {}, f"{type(exc).__name__}: {exc}"
            try:
                reporter.event(level="error", message=reason + "\n" + traceback.format_exc(limit=3))
            except TRANSIENT_DB_ERRORS:
                logger.exception("Job %s: could not record the failure; leaving the attempt to the reaper", job.pk)
                return "database unreachable"
    finally:
        usage = reporter.stop()
    if state is None or reporter.lease_lost.is_set():
        return "lease lost"
    try:
        measured = estimates.record(job=job, result=result, seconds=time.monotonic() - attempt_started,
                                    device_class=device_class)
    except DatabaseError:  # a measurement is worth less than the outcome: never lose the latter for it
        logger.warning("Job %s: its throughput was not recorded", job.pk, exc_info=True)
        measured = None
    if measured:  # what the next jobs' quotes and ETAs learn from
        result = {**result, "throughput": measured}
    try:
        finished = db_retry(lambda: lifecycle.job_finish(job=job, token=token, state=state, result=result,
                                                        failure_reason=reason, usage=usage), what="finish", job_id=job.pk)
    except TRANSIENT_DB_ERRORS:
        logger.exception("Job %s: could not record its outcome; leaving the attempt to the reaper", job.pk)
        return "database unreachable"
    return state if finished else "lease lost"
