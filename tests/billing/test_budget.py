"""A per-job budget and the spend cap stop a running job (in-process worker:
claim, heartbeat thread, fenced writes): it keeps its best checkpoint, says
why, and is billed no further than the heartbeat that crossed the line."""
from __future__ import annotations

from decimal import Decimal

import pytest

from billing import metering
from billing.models import PlanRate
from jobs import lifecycle, runner
from jobs.models import Job, JobState

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_job_stops_at_its_budget(tenant_a, api_for, long_dataset, tiny_bert, fast_jobs):
    PlanRate.objects.filter(plan__slug="free", device_class="cpu").update(usd_per_second=Decimal("0.01"))
    api = api_for(tenant_a.key(scopes=["write"]))
    response = api.post("/api/v1/jobs", {"dataset_id": long_dataset.pk, "base_model": "tiny-bert", "max_cost": "0.02",
                                         "hyperparameters": {"epochs": 50, "batch_size": 4, "learning_rate": 3e-3}}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["max_cost"] == "0.0200"
    claimed, token = lifecycle.job_claim(job_id=response.json()["id"], worker="test", device_class="cpu")
    assert runner.run_claimed_job(claimed, token) == JobState.CANCELLED
    job = Job.objects.get(pk=claimed.pk)
    assert job.failure_reason.startswith("Stopped at its budget of $0.02") and job.result["stop_reason"] == "budget"
    billed = metering.job_seconds(job=job)
    # $0.02 at $0.01/s is 2 s; the check runs after each heartbeat (0.5 s here).
    assert Decimal("2") <= billed <= Decimal("4")
    assert job.step < job.total_steps  # it did stop early
    assert job.checkpoints.exists()


def test_bad_budgets_are_refused_naming_the_field(tenant_a, api_for, long_dataset, tiny_bert):
    api = api_for(tenant_a.key(scopes=["write"]))
    for value in ("0", "-1", "abc"):
        response = api.post("/api/v1/jobs", {"dataset_id": long_dataset.pk, "base_model": "tiny-bert", "max_cost": value},
                            format="json")
        assert response.status_code == 400 and "max_cost" in response.json()["error"]["fields"], response.content
    assert not Job.objects.exists()
