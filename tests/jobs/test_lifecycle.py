"""The job lifecycle's failure paths, in process: a database outage mid-attempt
(the heartbeat lives exactly as long as the attempt), the no-progress watchdog,
a cancel pending when the worker is lost, the sweeper's order, the billed /
not-billed / running seconds, and the rule that no run happens inside an open
transaction. Real processes: test_worker_faults.py, test_db_outage.py and
test_maintenance_queue.py."""
from __future__ import annotations

import threading
import uuid
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import OperationalError, connection
from django.db.backends.signals import connection_created
from django.utils import timezone

from billing.models import UsageSegment
from config.celery_app import app as celery_app
from jobs import lifecycle, runner
from jobs import reporter as reporter_module
from jobs.models import Job, JobEvent, JobState

from .worker_helpers import job_state, submit, wait_for


@pytest.fixture
def client(tenant_a, api_for):
    return api_for(tenant_a.key(scopes=["write"]))


# --- a database outage, seen by the worker's threads only ---------------------------------------------------

class Outage:
    """While on, every query from a thread other than the test's raises
    OperationalError, as a database that went away does (Django's documented
    execute_wrapper hook, installed on each connection those threads open)."""

    def __init__(self):
        self.on = threading.Event()
        self.failures: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, execute, sql, params, many, context):
        if self.on.is_set() and threading.current_thread() is not threading.main_thread():
            with self._lock:
                name = threading.current_thread().name
                self.failures[name] = self.failures.get(name, 0) + 1
            raise OperationalError("server closed the connection unexpectedly (simulated outage)")
        return execute(sql, params, many, context)

    def install(self, sender, connection, **kwargs):
        if self not in connection.execute_wrappers:
            connection.execute_wrappers.append(self)


@contextmanager
def outage_hook():
    outage = Outage()
    connection_created.connect(outage.install, dispatch_uid="test-outage")
    try:
        yield outage
    finally:
        outage.on.clear()
        connection_created.disconnect(dispatch_uid="test-outage")


def run_in_thread(claimed, token) -> tuple[threading.Thread, list]:
    """The worker's side, as a Celery child runs it: its own thread, its own connection."""
    outcome: list = []

    def target():
        try:
            outcome.append(runner.run_claimed_job(claimed, token))
        except BaseException as exc:  # the assertion below names it
            outcome.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=target, name="runner")
    thread.start()
    return thread, outcome


def heartbeat_threads(job_id: int) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"heartbeat-job-{job_id}" and t.is_alive()]


def contiguous(job_id: int) -> bool:
    segments = list(UsageSegment.objects.filter(job_id=job_id).order_by("started_at"))
    return all(b.started_at >= a.ended_at for a, b in zip(segments, segments[1:]))


@pytest.mark.django_db(transaction=True)
def test_an_attempt_killed_by_a_database_outage_takes_its_heartbeat_with_it(client, long_dataset, tiny_bert, fast_jobs):
    """The outage outlasts the retries (the lease, 2 s here): the attempt ends,
    its heartbeat stops at once (it used to extend the lease for ever with the
    step frozen), and the reaper can take the job over."""
    fast_jobs.LATHE_JOB_LEASE_SECONDS = 2
    job_id = submit(client, long_dataset, epochs=50, batch_size=4, early_stopping_patience=0)
    claimed, token = lifecycle.job_claim(job_id=job_id, worker="test", device_class="cpu")
    with outage_hook() as outage:
        thread, outcome = run_in_thread(claimed, token)
        wait_for(lambda: job_state(job_id).step >= 5, timeout=120, message="the job to train a little")
        outage.on.set()  # and it never ends while the attempt lives
        thread.join(timeout=120)
        assert not thread.is_alive(), "the attempt hung on the outage"
        assert outcome == ["database unreachable"], outcome
        assert heartbeat_threads(job_id) == [], "the heartbeat outlived its attempt"
        assert outage.failures.get("runner", 0) >= 2  # retried before giving up
    job = job_state(job_id)
    assert job.state == JobState.RUNNING and job.lease_token == token  # nothing committed: the reaper's turn
    Job.objects.filter(pk=job_id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))  # the lease runs out
    assert lifecycle.reap_expired_leases()["requeued"] == [job_id]
    assert contiguous(job_id)


@pytest.mark.django_db(transaction=True)
def test_a_short_database_outage_is_retried_inside_the_attempt(client, dataset, tiny_bert, fast_jobs, monkeypatch):
    fast_jobs.LATHE_JOB_LEASE_SECONDS = 60  # the retry window: far longer than this outage
    job_id = submit(client, dataset, epochs=8, batch_size=4, early_stopping_patience=0)
    claimed, token = lifecycle.job_claim(job_id=job_id, worker="test", device_class="cpu")
    with outage_hook() as outage:
        # The outage starts from the training thread itself, once step 5 is written: however slow
        # this machine, the job cannot finish before it (a poll from here could miss the window).
        report_progress = reporter_module.JobReporter.progress

        def progress_then_outage(reporter, **kwargs):
            report_progress(reporter, **kwargs)
            if reporter._last_step is not None and reporter._last_step >= 5 and not outage.failures:
                outage.on.set()

        monkeypatch.setattr(reporter_module.JobReporter, "progress", progress_then_outage)
        thread, outcome = run_in_thread(claimed, token)
        # The training thread's write-backs fail a few times (with backoff), then the database is back.
        wait_for(lambda: outage.failures.get("runner", 0) >= 3, timeout=300, message="the training thread to hit the outage")
        outage.on.clear()
        thread.join(timeout=300)
        assert not thread.is_alive()
    assert outcome == [JobState.SUCCEEDED], outcome
    job = job_state(job_id)
    assert job.state == JobState.SUCCEEDED and job.attempts == 1 and job.step == job.total_steps
    assert heartbeat_threads(job_id) == []
    assert contiguous(job_id)
    # The attempt measured its step time for the watchdog.
    assert job.step_seconds and job.step_seconds > 0 and job.progress_at is not None


@pytest.mark.django_db
def test_record_usage_never_bills_an_interval_twice(client, dataset, tiny_bert):
    """A heartbeat retried after a commit whose answer was lost sends the same
    interval again: only the part not yet covered is metered."""
    job = Job.objects.get(pk=submit(client, dataset))
    claimed, token = lifecycle.job_claim(job_id=job.pk, worker="w", device_class="cpu")
    start = timezone.now() - timedelta(seconds=30)
    assert lifecycle.record_usage(job=claimed, token=token, started_at=start, ended_at=start + timedelta(seconds=10),
                                 device_class="cpu")
    assert lifecycle.record_usage(job=claimed, token=token, started_at=start, ended_at=start + timedelta(seconds=15),
                                 device_class="cpu")
    assert [s.seconds for s in UsageSegment.objects.filter(job=job).order_by("id")] == [Decimal("10.000"), Decimal("5.000")]
    assert contiguous(job.pk)


@pytest.mark.django_db
def test_a_run_inside_an_open_transaction_is_refused(client, dataset, tiny_bert):
    """A run outlasts its lease; inside a transaction (a test's atomic block)
    the heartbeat's own connection cannot see the job and the server ends the
    idle session: it is refused up front, before any heartbeat starts."""
    job_id = submit(client, dataset)
    claimed, token = lifecycle.job_claim(job_id=job_id, worker="w", device_class="cpu")
    assert connection.in_atomic_block
    with pytest.raises(RuntimeError, match="inside a transaction"):
        runner.run_claimed_job(claimed, token)
    assert heartbeat_threads(job_id) == [] and not UsageSegment.objects.filter(job_id=job_id).exists()


# --- the no-progress watchdog ----------------------------------------------------------------------------

def running(client, dataset, *, step_seconds, idle, attempts_left=True) -> Job:
    """A claimed job whose heartbeat is live but whose step last advanced `idle` ago."""
    job = Job.objects.get(pk=submit(client, dataset))
    now = timezone.now()
    Job.objects.filter(pk=job.pk).update(state=JobState.RUNNING, attempts=1, max_attempts=3 if attempts_left else 1,
                                         lease_token=uuid.uuid4(), lease_expires_at=now + timedelta(hours=1),
                                         heartbeat_at=now, step=40, step_seconds=step_seconds, progress_at=now - idle)
    return Job.objects.get(pk=job.pk)


@pytest.mark.django_db
def test_watchdog_takes_over_an_attempt_whose_step_stopped(client, dataset, tiny_bert, settings,
                                                           django_capture_on_commit_callbacks):
    settings.LATHE_JOB_STALL_STEP_MULTIPLE, settings.LATHE_JOB_STALL_MIN_SECONDS = 100, 20 * 60
    fast_stuck = running(client, dataset, step_seconds=0.5, idle=timedelta(minutes=21))   # limit: the 20 min floor
    fast_fine = running(client, dataset, step_seconds=0.5, idle=timedelta(minutes=19))
    slow_fine = running(client, dataset, step_seconds=30, idle=timedelta(minutes=45))     # limit: 100 × 30 s = 50 min
    slow_stuck = running(client, dataset, step_seconds=30, idle=timedelta(minutes=55))
    last_try = running(client, dataset, step_seconds=1, idle=timedelta(hours=2), attempts_left=False)
    not_measured = running(client, dataset, step_seconds=None, idle=timedelta(hours=2))  # setup: only the lease watches
    with django_capture_on_commit_callbacks(execute=False):
        outcome = lifecycle.reap_expired_leases()
    assert sorted(outcome["requeued"]) == sorted([fast_stuck.pk, slow_stuck.pk]) and outcome["failed"] == [last_try.pk]
    for job in (fast_fine, slow_fine, not_measured):
        assert Job.objects.get(pk=job.pk).state == JobState.RUNNING
    requeued = Job.objects.get(pk=slow_stuck.pk)
    assert requeued.state == JobState.QUEUED and requeued.lease_token is None
    event = JobEvent.objects.filter(job=slow_stuck, level="warning").last().message
    assert "no progress for 55 min at step 40" in event and "limit 50 min" in event
    failed = Job.objects.get(pk=last_try.pk)
    assert failed.state == JobState.FAILED and "no progress" in failed.failure_reason
    # The stalled attempt's heartbeat is fenced off from then on.
    now = timezone.now()
    assert not lifecycle.record_usage(job=slow_stuck, token=slow_stuck.lease_token, started_at=now, ended_at=now,
                                     device_class="cpu")


# --- a cancel pending when the worker is lost ------------------------------------------------------------

@pytest.mark.django_db
def test_a_pending_cancel_ends_cancelled_when_the_worker_is_lost(client, dataset, tiny_bert,
                                                                 django_capture_on_commit_callbacks):
    """Cancel requested, then the worker froze (SIGSTOP) past its lease: the
    reaper must not re-queue it (claim and sweeper skip a pending cancel, so it
    would sit queued for ever)."""
    frozen = Job.objects.get(pk=submit(client, dataset))
    lifecycle.job_claim(job_id=frozen.pk, worker="w", device_class="cpu")
    assert client.post(f"/api/v1/jobs/{frozen.pk}/cancel").json()["state"] == "running"
    Job.objects.filter(pk=frozen.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    # Left behind by a cancel that raced a re-queue: queued, cancel pending, no lease.
    raced = Job.objects.get(pk=submit(client, dataset))
    Job.objects.filter(pk=raced.pk).update(cancel_requested_at=timezone.now())
    with django_capture_on_commit_callbacks(execute=False) as rung:
        outcome = lifecycle.reap_expired_leases()
    for job in (frozen, raced):
        job.refresh_from_db()
        assert job.state == JobState.CANCELLED and job.finished_at and job.lease_token is None
    assert sorted(outcome["cancelled"]) == sorted([frozen.pk, raced.pk]) and outcome["requeued"] == [] and not rung
    assert "Cancelled" in frozen.failure_reason and "best checkpoint is kept" in frozen.failure_reason
    assert client.get(f"/api/v1/jobs/{frozen.pk}").json()["state"] == "cancelled"


# --- the sweeper ---------------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_sweeper_rings_the_longest_waiting_first(client, dataset, tiny_bert, monkeypatch):
    rung = []
    # Doorbells are rung by task name through the Celery app; any other name would show in `rung`.
    monkeypatch.setattr(celery_app, "send_task",
                        lambda name, args, **kw: rung.append(args[0] if name == "jobs.tasks.run_job" else name))
    first, second, third = (Job.objects.get(pk=submit(client, dataset)) for _ in range(3))
    now = timezone.now()
    for job, waited in ((first, 3), (second, 1), (third, 2)):
        Job.objects.filter(pk=job.pk).update(queued_at=now - timedelta(hours=waited), last_dispatched_at=now - timedelta(hours=1))
    assert lifecycle.sweep_lost_doorbells() == [first.pk, third.pk, second.pk] and rung == [first.pk, third.pk, second.pk]


# --- billed, not billed, running -----------------------------------------------------------------------------

@pytest.mark.django_db
def test_billed_seconds_are_the_billable_ones_and_running_usage_is_shown(client, dataset, tiny_bert, tenant_a):
    from billing import metering
    from billing.models import UsageExclusion

    job = Job.objects.get(pk=submit(client, dataset))
    now = timezone.now()
    lost_token = uuid.uuid4()

    def segment(attempt, token, seconds):
        return UsageSegment.objects.create(organization=job.organization, job=job, attempt=attempt, lease_token=token,
                                           device_class="cpu", started_at=now - timedelta(seconds=seconds), ended_at=now,
                                           seconds=Decimal(seconds))
    segment(1, lost_token, 30)
    UsageExclusion.objects.create(segment=segment(1, lost_token, 12), reason="worker lost")
    claimed, token = lifecycle.job_claim(job_id=job.pk, worker="w", device_class="cpu")
    segment(2, token, 7)
    body = client.get(f"/api/v1/jobs/{job.pk}").json()
    assert (body["billed_seconds"], body["excluded_seconds"], body["running_seconds"]) == (37.0, 12.0, 7.0)
    assert [j["billed_seconds"] for j in client.get("/api/v1/jobs").json()["results"]] == [37.0]
    assert metering.open_attempt_usage(organization=tenant_a.organization) == {job.pk: 7.0}
    # The job page says the same.
    from django.test import Client

    page = Client()
    page.force_login(tenant_a.owner)
    html = page.get(f"/o/{tenant_a.organization.slug}/jobs/{job.pk}").content.decode()
    assert 'data-testid="job-billed">37.0 s' in html
    assert "12.0 s not billed" in html and "7.0 s of it running" in html
    # The Billing page and the usage API count the same seconds, the running attempt's marked as such.
    usage_row = next(r for r in client.get("/api/v1/billing/usage").json()["per_job"] if r["job_id"] == job.pk)
    assert (usage_row["seconds"], usage_row["running"], usage_row["running_seconds"]) == (37.0, True, 7.0)
    billing_html = page.get(f"/o/{tenant_a.organization.slug}/billing").content.decode()
    assert "37.0" in billing_html and 'data-testid="running-usage"' in billing_html
    # Once the attempt ends, nothing is running any more.
    lifecycle.job_finish(job=claimed, token=token, state=JobState.SUCCEEDED)
    assert client.get(f"/api/v1/jobs/{job.pk}").json()["running_seconds"] == 0
    assert metering.open_attempt_usage(organization=tenant_a.organization) == {}
    assert 'data-testid="running-usage"' not in page.get(f"/o/{tenant_a.organization.slug}/billing").content.decode()
