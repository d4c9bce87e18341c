"""Quotes that hold: the quote a customer was shown is stored on the job at
submission; a succeeded job's quote error is its billed seconds against it
(signed, and whether it fell inside the quoted range), in the API, on the job
page and, per device class and method, on an operators' admin page. And the
estimator learns: with history at a measured throughput, a new job that runs at
that throughput is quoted within ±15 % — also when it trains on more or fewer
rows than its version's train split (a validation set of its own, a carved test
split)."""
from __future__ import annotations

import json
import random
import statistics
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone

from billing.models import UsageExclusion, UsageSegment
from jobs import selectors
from jobs.models import Job, JobKind, JobState
from jobs.quote_errors import quote_error
from tests.jobs.history import measured_job, tokenized_dataset
from tests.jobs.history import model, version  # noqa: F401 (fixtures)
from workers.data import carve_test

pytestmark = pytest.mark.django_db


@pytest.fixture
def api(tenant_a, api_for):
    return api_for(tenant_a.key(scopes=["read", "write"]))


def body(version, **hyper) -> dict:
    return {"dataset_id": version.dataset_id, "base_model": "tiny-bert", "method": "full",
            "hyperparameters": {"epochs": 2, "max_length": 64, "refit": False, **hyper}}


def submit(api, payload: dict) -> Job:
    response = api.post("/api/v1/jobs", payload, format="json")
    assert response.status_code == 201, response.content
    return Job.objects.get(pk=response.json()["id"])


def bill(job: Job, seconds: float, *, excluded: float = 0.0, device_class: str = "cpu",
         state: str = JobState.SUCCEEDED, finished_ago: float = 0.0) -> Job:
    """The job finished having been metered `seconds` (plus `excluded` seconds lost with a worker, not billed)."""
    finished = timezone.now() - timedelta(minutes=finished_ago)
    Job.objects.filter(pk=job.pk).update(state=state, device_class=device_class, attempts=1, finished_at=finished,
                                         started_at=finished - timedelta(seconds=seconds + excluded))
    for amount, lost in ((seconds, False), (excluded, True)):
        if amount:
            segment = UsageSegment.objects.create(
                organization=job.organization, job=job, attempt=1, lease_token=uuid.uuid4(), device_class=device_class,
                started_at=finished - timedelta(seconds=amount), ended_at=finished, seconds=Decimal(str(round(amount, 3))))
            if lost:
                UsageExclusion.objects.create(segment=segment, reason="lost with its worker")
    job.refresh_from_db()
    return job


def quoted_job(organization, version, model, *, estimated: float, low: float, high: float, history_jobs: int = 5,
               method: str = "full", kind: str = JobKind.FINETUNE, spec: dict | None = None) -> Job:
    """A hand-made job carrying a stored quote (as submission stores it)."""
    return Job.objects.create(
        organization=organization, kind=kind, state=JobState.QUEUED, dataset_version=version, base_model=model,
        method=method, spec=spec or {}, labels=["a", "b"],
        quote={"device_class": "cpu", "method": method, "tokens": 1000, "estimated_seconds": estimated,
               "low_seconds": low, "high_seconds": high, "usd_per_second": "0.001", "estimated_cost_usd": "0.10",
               "history_jobs": history_jobs, "basis": "hand-made"})


# --- the stored quote ------------------------------------------------------------------------

def test_the_stored_quote_is_what_post_jobs_quote_answered_for_the_same_body(api, tenant_a, version, model):
    for age, rate in enumerate([40, 44, 38, 41]):  # a history, so the quote is not the default
        measured_job(tenant_a.organization, version, model, tokens_per_second=rate, startup=12.0, age_minutes=age + 1)
    payload = body(version)
    shown = api.post("/api/v1/jobs/quote", payload, format="json")
    assert shown.status_code == 200, shown.content
    shown = shown.json()
    assert shown["history_jobs"] == 4 and shown["estimated_seconds"] > 12
    job = submit(api, payload)
    assert job.quote == shown
    for name in ("estimated_seconds", "low_seconds", "high_seconds", "estimated_cost_usd", "device_class", "basis",
                 "history_jobs"):
        assert name in job.quote
    # An Idempotency-Key replay returns the first job with the quote it was shown, not a new one.
    keyed = api.post("/api/v1/jobs", payload, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    measured_job(tenant_a.organization, version, model, tokens_per_second=5, startup=12.0)  # the quote would move now
    again = api.post("/api/v1/jobs", payload, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert again.status_code == 200 and again.json()["id"] == keyed.json()["id"]
    assert Job.objects.get(pk=keyed.json()["id"]).quote == shown


def test_a_dry_run_quote_stores_nothing(api, version, model):
    before = Job.objects.count()
    assert api.post("/api/v1/jobs/quote", body(version), format="json").status_code == 200
    assert Job.objects.count() == before


# --- the quote error ----------------------------------------------------------------------

def test_quote_error_is_billed_seconds_against_the_quote(tenant_a, version, model):
    org = tenant_a.organization
    slow = bill(quoted_job(org, version, model, estimated=100, low=80, high=125), 130.0)
    error = quote_error(slow)
    assert error["actual_seconds"] == 130.0 and error["quoted_seconds"] == 100
    assert error["error_percent"] == 30.0 and error["within_range"] is False
    assert error["actual_cost_usd"] == "0.1300"  # the billed seconds at the quoted rate ($0.001/s)
    fast = bill(quoted_job(org, version, model, estimated=200, low=150, high=260), 170.0)
    assert quote_error(fast)["error_percent"] == -15.0 and quote_error(fast)["within_range"] is True
    # Work lost with a worker and redone is not billed, so it does not count against the quote.
    crashed = bill(quoted_job(org, version, model, estimated=100, low=90, high=110), 104.0, excluded=60.0)
    assert quote_error(crashed)["actual_seconds"] == 104.0 and quote_error(crashed)["within_range"] is True
    # A range edge counts as inside.
    edge = bill(quoted_job(org, version, model, estimated=100, low=90, high=110), 110.0)
    assert quote_error(edge)["within_range"] is True and quote_error(edge)["error_percent"] == 10.0


def test_no_error_without_a_quote_or_before_success(tenant_a, version, model):
    org = tenant_a.organization
    queued = quoted_job(org, version, model, estimated=100, low=80, high=125)
    assert quote_error(queued) is None
    failed = bill(quoted_job(org, version, model, estimated=100, low=80, high=125), 30.0, state=JobState.FAILED)
    assert quote_error(failed) is None  # it did not do the quoted work
    unquoted = bill(quoted_job(org, version, model, estimated=100, low=80, high=125), 90.0)
    Job.objects.filter(pk=unquoted.pk).update(quote={})
    unquoted.refresh_from_db()
    assert quote_error(unquoted) is None
    unmetered = bill(quoted_job(org, version, model, estimated=100, low=80, high=125), 0.0)
    assert quote_error(unmetered) is None


# --- the API field and the job page ---------------------------------------------------------------

def test_the_job_representation_carries_its_quote_then_its_actual(api, client, tenant_a, version, model):
    job = submit(api, body(version))
    shown = api.get(f"/api/v1/jobs/{job.pk}").json()["quote"]
    assert shown["quoted"]["estimated_seconds"] == job.quote["estimated_seconds"]
    assert shown["quoted"]["basis"] == job.quote["basis"] and shown["quoted"]["device_class"] == job.quote["device_class"]
    assert shown["actual"] is None and shown["error_percent"] is None
    actual = job.quote["estimated_seconds"] * 1.2
    bill(job, actual)
    done = api.get(f"/api/v1/jobs/{job.pk}").json()["quote"]
    assert done["actual"]["seconds"] == pytest.approx(actual, abs=0.001)
    assert done["error_percent"] == pytest.approx(20.0, abs=0.01)
    assert done["within_range"] == (job.quote["low_seconds"] <= actual <= job.quote["high_seconds"])
    listed = next(j for j in api.get("/api/v1/jobs").json()["results"] if j["id"] == job.pk)
    assert listed["quote"] == done
    # The job page shows it too.
    client.force_login(tenant_a.owner)
    page = client.get(reverse("dashboard:job-detail", args=[tenant_a.organization.slug, job.pk])).content.decode()
    assert 'data-testid="job-quote"' in page and "+20.0 %" in page
    assert f"{job.quote['estimated_seconds']} s" in page


def test_a_job_from_before_stored_quotes_has_a_null_quote(api, version, model):
    job = submit(api, body(version))
    Job.objects.filter(pk=job.pk).update(quote={})
    assert api.get(f"/api/v1/jobs/{job.pk}").json()["quote"] is None


def test_the_schema_describes_the_quote():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    job = schema["components"]["schemas"]["Job"]["properties"]
    assert "quote" in job and "billed seconds" in job["quote"]["description"]


# --- per device class (operators) ---------------------------------------------------------------

def independent_rows(cases):
    """The aggregation, computed apart: cases are (device_class, method, quoted, low, high, actual, history_jobs)."""
    out = {}
    for device, method, quoted, low, high, actual, history in cases:
        out.setdefault((device, method), []).append(((actual - quoted) / quoted * 100, low <= actual <= high, history))
    rows = {}
    for key, items in out.items():
        learned = [(e, inside) for e, inside, h in items if h > 0]
        defaults = [abs(e) for e, _inside, h in items if h == 0]
        errors = [e for e, _ in learned]
        rows[key] = {"jobs": len(items), "with_history": len(learned), "default_jobs": len(defaults),
                     "median_abs_error_percent": statistics.median([abs(e) for e in errors]) if errors else None,
                     "mean_error_percent": statistics.fmean(errors) if errors else None,
                     "within_15_percent": sum(abs(e) <= 15 for e in errors) / len(errors) if errors else None,
                     "inside_range": sum(i for _, i in learned) / len(learned) if learned else None,
                     "default_median_abs_error_percent": statistics.median(defaults) if defaults else None}
    return rows


def test_the_quote_error_per_device_class_and_method(tenant_a, tenant_b, version, model):
    rng = random.Random(14)
    cases = []
    for index in range(24):
        device, method = rng.choice([("cpu", "full"), ("cpu", "lora"), ("nvidia-h100", "full")])
        quoted = rng.randint(50, 500)
        low, high = round(quoted * 0.85), round(quoted * 1.2)
        actual = round(quoted * rng.uniform(0.7, 1.4), 3)
        history = rng.choice([0, 3, 5, 5])
        job = quoted_job(tenant_a.organization if index % 2 else tenant_b.organization, version, model,
                         estimated=quoted, low=low, high=high, history_jobs=history, method=method)
        bill(job, actual, device_class=device, finished_ago=index + 10)
        cases.append((device, method, quoted, low, high, round(actual, 3), history))
    # Not counted: a failed job, an unquoted one, and a queued one.
    bill(quoted_job(tenant_a.organization, version, model, estimated=100, low=90, high=110), 900.0, state=JobState.FAILED)
    unquoted = bill(quoted_job(tenant_a.organization, version, model, estimated=100, low=90, high=110), 900.0)
    Job.objects.filter(pk=unquoted.pk).update(quote={})
    quoted_job(tenant_a.organization, version, model, estimated=100, low=90, high=110)
    # A prune job groups under its prune method.
    prune = quoted_job(tenant_a.organization, version, model, estimated=100, low=90, high=110, method="full",
                       kind=JobKind.PRUNE, spec={"prune_method": "heads"})
    bill(prune, 95.0, finished_ago=1)
    cases.append(("cpu", "heads", 100, 90, 110, 95.0, 5))

    rows = {(r["device_class"], r["method"]): r for r in selectors.quote_accuracy()}
    expected = independent_rows(cases)
    assert set(rows) == set(expected)
    for key, want in expected.items():
        got = rows[key]
        for name, value in want.items():
            assert got[name] == (pytest.approx(value, abs=0.01) if isinstance(value, float) else value), (key, name)

    # The window: the last N finished (newest first) — the prune job (finished last) and the next three.
    newest = sorted(zip(cases[:-1], range(24)), key=lambda c: c[1])[:3]  # finished_ago = index + 10
    window = independent_rows([cases[-1]] + [c for c, _ in newest])
    rows = {(r["device_class"], r["method"]): r for r in selectors.quote_accuracy(last=4)}
    assert {k: r["jobs"] for k, r in rows.items()} == {k: w["jobs"] for k, w in window.items()}


def test_the_admin_page_is_for_staff(client, make_user, tenant_a, version, model):
    bill(quoted_job(tenant_a.organization, version, model, estimated=100, low=90, high=125), 120.0,
         device_class="nvidia-h100")
    url = reverse("admin:jobs_quote_accuracy")
    client.force_login(make_user(email="ops@lathe.local", is_staff=True, is_superuser=True))
    page = client.get(url)
    assert page.status_code == 200
    text = page.content.decode()
    assert "Quote accuracy" in text and "nvidia-h100" in text and "20.0 %" in text
    assert client.get(url, {"last": "nonsense"}).status_code == 200
    client.logout()
    client.force_login(tenant_a.owner)  # a customer, not staff
    refused = client.get(url)
    assert refused.status_code == 302 and "/admin/login/" in refused["Location"]
    assert "nvidia-h100" not in client.get(url, follow=True).content.decode()
    client.logout()
    assert client.get(url).status_code == 302


# --- the estimator learns -----------------------------------------------------------------------

def rows_of(*names) -> list[dict]:
    out = []
    for name in names:
        with default_storage.open(name, "rb") as fh:
            out += [json.loads(line) for line in fh.read().decode().splitlines() if line.strip()]
    return out


def worker_tokens(model, rows: list[dict], max_length: int) -> int:
    """The tokens the worker's training loop counts for one epoch over these rows (each truncated at max_length)."""
    lengths = model.load_tokenizer()([r["text"] for r in rows], truncation=False)["input_ids"]
    return sum(min(len(ids), max_length) for ids in lengths)


@pytest.mark.parametrize("case", ["train_split", "validation_set_of_its_own", "carved_test_split"])
def test_with_history_the_quote_is_within_15_percent_of_a_job_at_the_same_throughput(case, api, tenant_a, version, model):
    """N finished jobs measured at R tokens/s (+ their startup) on cpu; the next
    job's actual follows the same throughput over the rows the worker really
    trains on: its quote is within ±15 % of it, and the actual inside the range."""
    rate, startup, epochs, max_length = 25.0, 15.0, 2, 64
    for age in range(6):
        measured_job(tenant_a.organization, version, model, tokens_per_second=rate * (1 + 0.03 * (-1) ** age),
                     startup=startup, age_minutes=age + 1, tokens=50_000 + 1000 * age)
    payload = body(version, epochs=epochs, max_length=max_length)
    train_rows = rows_of(version.train_file)
    if case == "validation_set_of_its_own":
        separate = tokenized_dataset(tenant_a, model)
        payload.update(validation_dataset_id=separate.dataset_id)
        payload["hyperparameters"].pop("refit")
        train_rows = rows_of(version.train_file, version.validation_file)  # the version is trained on whole
    elif case == "carved_test_split":
        payload.update(test_fraction=0.3)
        train_rows, _test = carve_test(train_rows, 0.3)
    job = submit(api, payload)
    assert job.quote["history_jobs"] == 6
    actual = startup + epochs * worker_tokens(model, train_rows, max_length) / rate
    job = bill(job, actual)
    error = quote_error(job)
    assert abs(error["error_percent"]) <= 15.0, (case, error, job.quote)
    assert error["within_range"], (case, error)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("case", ["validation_set_of_its_own", "carved_test_split"])
def test_the_quoted_work_is_what_the_real_worker_counts(case, api, tenant_a, version, model):
    """The real worker runs the job: the tokens its training loop counted (the
    history the next quotes learn from) are the tokens its quote counted, so
    a throughput learned from one job carries over to the next."""
    from jobs import lifecycle, runner

    payload = body(version, epochs=2, max_length=64, batch_size=8, early_stopping_patience=0)
    if case == "validation_set_of_its_own":
        payload.update(validation_dataset_id=tokenized_dataset(tenant_a, model).dataset_id)
        payload["hyperparameters"].pop("refit")
    else:
        payload.update(test_fraction=0.3)
    job = submit(api, payload)
    claimed, token = lifecycle.job_claim(job_id=job.pk, worker="test", device_class="cpu")
    assert runner.run_claimed_job(claimed, token) == JobState.SUCCEEDED
    job.refresh_from_db()
    measured = job.result["throughput"]["tokens"]
    assert abs(job.quote["tokens"] - measured) <= 0.05 * measured, (case, job.quote["tokens"], measured)
    error = quote_error(job)  # the first job on this machine is quoted from the default: reported, not judged
    assert error is not None and error["actual_seconds"] > 0 and error["history_jobs"] == 0
