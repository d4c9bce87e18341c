"""A real worker configured for 2 devices per job (LATHE_DISTRIBUTED_PROCESSES=2, CPU with gloo: the same
code path as 2 GPUs with NCCL) runs a fine-tune across two torch.distributed ranks, and bills 2 devices ×
seconds at the plan's rate."""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.db.models import Sum

from billing.ledger import rollup_usage
from billing.models import LedgerEntry, UsageSegment
from jobs.models import JobState
from tests.celery_worker import celery_worker
from tenancy.entitlements import entitlements_for

from .worker_helpers import job_state, submit, wait_for, worker_env

pytestmark = [pytest.mark.worker, pytest.mark.slow, pytest.mark.django_db(transaction=True),
              pytest.mark.usefixtures("one_torchrun_group_at_a_time")]


def test_a_finetune_across_two_ranks_runs_and_bills_two_devices(tmp_path, fast_jobs, tenant_a, api_for, dataset, tiny_bert):
    client = api_for(tenant_a.key(scopes=["write"]))
    log = tmp_path / "worker.log"
    env = worker_env(fast_jobs, tmp_path, LATHE_DISTRIBUTED_PROCESSES="2")
    with celery_worker(log, extra_env=env) as (queue, _process):
        fast_jobs.LATHE_DEFAULT_QUEUE = queue
        job_id = submit(client, dataset, epochs=2, batch_size=4)
        job = wait_for(lambda: job_state(job_id).is_terminal and job_state(job_id), timeout=300,
                       message=f"the job to finish; log:\n{log}")
    assert job.state == JobState.SUCCEEDED, (job.failure_reason, log.read_text()[-4000:])
    events = [e.message for e in job.events.all()]
    assert any("Training on cpu" in m for m in events)  # rank 0's events reached the job through the worker
    body = client.get(f"/api/v1/jobs/{job_id}").json()
    assert body["progress"]["step"] == body["progress"]["total_steps"] > 0
    assert {a["name"] for a in client.get(f"/api/v1/jobs/{job_id}/artifacts").json()} >= {"model.zip", "README.md"}

    segments = UsageSegment.objects.filter(job_id=job_id)
    assert segments.exists() and set(segments.values_list("device_count", flat=True)) == {2}
    rollup_usage()
    entry = LedgerEntry.objects.get(job_id=job_id)
    seconds = segments.aggregate(s=Sum("seconds"))["s"]
    rate = entitlements_for(organization=tenant_a.organization).rate_for(entry.device_class)
    assert entry.device_count == 2 and entry.seconds == seconds
    expected = (seconds * 2 * rate * 1_000_000).quantize(Decimal(1), rounding=ROUND_HALF_UP)
    assert entry.amount_micros == int(expected)
