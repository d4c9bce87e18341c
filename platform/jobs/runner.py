"""Runs a claimed job: the reporter (jobs/reporter.py) heartbeats and fences
every write, the kind table (jobs/kind_runners.py) builds the spec and runs
the worker code, and the outcome commits with the last usage segment. If the
attempt dies on the database, its heartbeat dies with it, so the reaper takes
the job over."""
from __future__ import annotations

import logging
import time
import traceback

from django.db import DatabaseError, connection

from core.logging import job_log_context

from workers.devices import device_class as detect_device_class

from . import estimates, lifecycle
from .kind_runners import KIND_RUNNERS, devices_per_job
from .models import Job, JobState
from .reporter import TRANSIENT_DB_ERRORS, JobReporter, with_db_retry

logger = logging.getLogger(__name__)


def run_claimed_job(job: Job, token) -> str:
    """The attempt, with the organization and job id on every log line it writes (core.logging)."""
    with job_log_context(organization_id=job.organization_id, job_id=job.pk):
        return _run_claimed_job(job, token)


def _run_claimed_job(job: Job, token) -> str:
    """The attempt under `token`: run it, then commit its outcome. The heartbeat
    lives exactly as long as the attempt (try/finally). An attempt that dies on a
    database outage outlasting the retries commits nothing: its lease runs out and
    the reaper re-queues it to resume from its last checkpoint."""
    if connection.in_atomic_block:
        # A run outlasts its lease: inside a transaction, its writes would be invisible to the
        # heartbeat's own connection, and the server ends the idle session (idle_in_transaction_session_timeout).
        raise RuntimeError("run_claimed_job must not run inside a transaction (it runs for longer than a lease).")
    device_class, device_count = detect_device_class()
    # A job across several devices is metered as that many devices × seconds (the ledger's device_count).
    device_count = max(device_count, devices_per_job(job))
    attempt_started = time.monotonic()  # the attempt's metered time starts with its reporter
    reporter = JobReporter(job, token, device_class, device_count)
    reporter.start()
    run = KIND_RUNNERS[job.kind]
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
        finished = with_db_retry(lambda: lifecycle.job_finish(job=job, token=token, state=state, result=result,
                                                        failure_reason=reason, usage=usage), what="finish", job_id=job.pk)
    except TRANSIENT_DB_ERRORS:
        logger.exception("Job %s: could not record its outcome; leaving the attempt to the reaper", job.pk)
        return "database unreachable"
    return state if finished else "lease lost"
