"""ETA: a queued job's is the work ahead of it in its queue (the running jobs'
remaining time, then the queued jobs' estimates) over the queue's workers, plus
its own estimate; a running job's is its remaining steps × its smoothed step
time, from its last progress report. Neither moves with the clock, and both say
what they rest on (`eta_basis`; a title on the pages). The estimator is fed
recorded history rows; no test here measures wall time (the one real run only
counts tokens)."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from jobs import lifecycle, runner, selectors
from jobs.estimates import estimate
from jobs.models import Job, JobState

from .history import measured_job, row_lengths, tokenized_dataset

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(tenant_a, api_for):
    return api_for(tenant_a.key(scopes=["write"]))


def submit(api, dataset, **hyper) -> Job:
    response = api.post("/api/v1/jobs", {"dataset_id": dataset.pk, "base_model": "tiny-bert",
                                         "hyperparameters": {"epochs": 3, **hyper}}, format="json")
    assert response.status_code == 201, response.content
    return Job.objects.get(pk=response.json()["id"])


def start(job: Job, *, step: int, total_steps: int, step_seconds: float, progress_at: datetime, started_ago: float = 3600):
    Job.objects.filter(pk=job.pk).update(state=JobState.RUNNING, device_class="cpu", step=step, total_steps=total_steps,
                                         step_seconds=step_seconds, progress_at=progress_at, attempts=1,
                                         started_at=progress_at - timedelta(seconds=started_ago))
    job.refresh_from_db()
    return job


def test_a_running_job_finishes_its_remaining_steps_at_its_smoothed_step_time(api, dataset, tiny_bert):
    """Remaining steps × the step time the worker measured (the median of its
    recent steps), from its last progress report: not elapsed ÷ steps since the
    attempt started, and the same whenever it is asked."""
    reported = timezone.now()
    job = start(submit(api, dataset), step=100, total_steps=300, step_seconds=2.0, progress_at=reported)
    expected = reported + timedelta(seconds=200 * 2.0)
    first = selectors.eta(job=job, now=reported + timedelta(seconds=1))
    later = selectors.eta(job=job, now=reported + timedelta(seconds=150))
    assert first.at == later.at == expected  # elapsed ÷ step (36 s a step here) would say 2 h, and move with the clock
    assert "200 steps left × 2.00 s a step" in first.basis
    body = api.get(f"/api/v1/jobs/{job.pk}").json()
    assert datetime.fromisoformat(body["eta"]) == expected and body["eta_basis"] == first.basis


def test_a_queued_job_waits_for_the_work_ahead_of_it(api, dataset, tiny_bert):
    """Behind a running job with 400 s left, a queued job finishes 400 s + its
    own estimate later — not "now" — and its ETA does not move with the clock."""
    reported = timezone.now()
    running = start(submit(api, dataset), step=100, total_steps=300, step_seconds=2.0, progress_at=reported)
    queued = submit(api, dataset)
    own = estimate(queued).seconds
    expected = reported + timedelta(seconds=400 + own)
    at_once = selectors.eta(job=queued, now=reported + timedelta(seconds=1))
    later = selectors.eta(job=queued, now=reported + timedelta(seconds=300))
    assert abs((at_once.at - expected).total_seconds()) < 1e-3 and abs((later.at - expected).total_seconds()) < 1e-3
    assert at_once.at > selectors.eta(job=running, now=reported).at
    assert "1 running and 0 queued ahead on 'default'" in at_once.basis and "default throughput for full on cpu" in at_once.basis
    body = api.get(f"/api/v1/jobs/{queued.pk}").json()
    assert body["queue_position"] == 1 and body["eta_basis"].startswith("starts in")
    assert datetime.fromisoformat(body["eta"]) > timezone.now() + timedelta(seconds=300)  # at least the 400 s ahead, less the test's run


def test_the_queue_ahead_is_spread_over_the_queues_workers(api, dataset, tiny_bert, settings):
    """Ahead of the last job: one running (400 s left) and one queued. One worker:
    it waits for both. Two workers (LATHE_QUEUE_CONCURRENCY): the queued one
    takes the free worker, and the last starts when the first of them ends."""
    reported = timezone.now()
    start(submit(api, dataset), step=100, total_steps=300, step_seconds=2.0, progress_at=reported)
    ahead, last = submit(api, dataset, epochs=2), submit(api, dataset)
    now = reported + timedelta(seconds=1)
    ahead_seconds, own = estimate(ahead).seconds, estimate(last).seconds
    one = selectors.eta(job=last, now=now)
    assert abs((one.at - now).total_seconds() - (399 + ahead_seconds + own)) < 1e-3 and "1 worker(s)" in one.basis
    settings.LATHE_QUEUE_CONCURRENCY = {"default": 2}
    two = selectors.eta(job=last, now=now)
    assert abs((two.at - now).total_seconds() - (min(399, ahead_seconds) + own)) < 1e-3
    assert "2 worker(s) (LATHE_QUEUE_CONCURRENCY)" in two.basis
    # The job ahead waits for no one: a worker is free for it.
    assert abs((selectors.eta(job=ahead, now=now).at - now).total_seconds() - ahead_seconds) < 1e-3


def test_a_queued_jobs_estimate_is_its_methods_measured_history(api, dataset, tiny_bert, tenant_a):
    type(tiny_bert).objects.filter(pk=tiny_bert.pk).update(parameter_count=1_000_000)
    for age in (30, 20, 10):
        measured_job(tenant_a.organization, dataset.latest_version, tiny_bert, tokens_per_second=50.0, age_minutes=age)
    queued = submit(api, dataset)
    eta = selectors.eta(job=queued)
    assert "next on 'default'" in eta.basis and "measured on the last 3 full on cpu" in eta.basis


def test_the_pages_show_the_eta_with_its_basis_on_hover(client, api, dataset, tiny_bert, tenant_a):
    reported = timezone.now()
    running = start(submit(api, dataset), step=10, total_steps=300, step_seconds=4.0, progress_at=reported)
    queued = submit(api, dataset)
    client.force_login(tenant_a.owner)
    slug = tenant_a.organization.slug
    for job in (running, queued):
        basis = selectors.eta(job=job).basis
        page = client.get(f"/o/{slug}/jobs/{job.pk}").content.decode()
        assert 'data-testid="job-eta"' in page and f'title="{basis}"' in page.replace("&#x27;", "'")
    listing = client.get(f"/o/{slug}/jobs").content.decode().replace("&#x27;", "'")
    assert listing.count('data-testid="job-eta"') == 2 and "290 steps left × 4.00 s a step" in listing


def test_the_schema_says_what_eta_is():
    from drf_spectacular.generators import SchemaGenerator

    job = SchemaGenerator().get_schema(request=None, public=True)["components"]["schemas"]["Job"]["properties"]
    assert job["eta"]["format"] == "date-time" and job["eta"].get("nullable") is True
    assert "queue" in job["eta"]["description"] and "step time" in job["eta"]["description"]
    assert job["eta_basis"]["type"] == "string" and "hover" in job["eta_basis"]["description"]


@pytest.mark.django_db(transaction=True)
def test_a_finished_attempt_records_what_it_measured_for_the_next_estimates(api, tenant_a, tiny_bert, media):
    """At job end the result carries the attempt's `throughput`: the real tokens
    its training loop processed (each row truncated at max_length, every epoch)
    and its seconds; the next job's estimate learns from it."""
    version = tokenized_dataset(tenant_a, tiny_bert)
    job = submit(api, version.dataset, epochs=2, max_length=8, batch_size=8, early_stopping_patience=0, refit=False)
    claimed, token = lifecycle.job_claim(job_id=job.pk, worker="test", device_class="cpu")
    assert runner.run_claimed_job(claimed, token) == JobState.SUCCEEDED
    job.refresh_from_db()
    measured = job.result["throughput"]
    train_tokens = sum(min(n, 8) for n in row_lengths(version, tiny_bert, splits=("train",)))
    assert measured["tokens"] == 2 * train_tokens and measured["method"] == "full"
    assert 0 < measured["work_seconds"] <= measured["seconds"] and measured["device_class"] == job.device_class
    following = Job(organization=tenant_a.organization, kind="finetune", dataset_version=version, base_model=tiny_bert,
                    method="full", spec=job.spec, queue=job.queue, device_class=job.device_class)
    guess = estimate(following)
    assert guess.history_jobs == 1 and f"measured on the last 1 full on {job.device_class}" in guess.basis
