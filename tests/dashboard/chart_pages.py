"""Rows behind every dashboard chart, written the way the platform writes them
(the reporter's JobMetric rows, a heartbeat's UsageSegment, a compression
report as workers/compression/run.py shapes it): a running fine-tune with
loss, accuracy and two epochs, a finished prune job with its search, and this
period's usage."""
from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from billing.models import UsageSegment
from jobs.models import Job, JobKind, JobMetric, JobState

MEASURES = {"size_bytes": 4_400_000, "nonzero_parameters": 1_100_000, "latency_ms_p50": 3.2, "latency_ms_p95": 4.1,
            "throughput_batch32": 900.0, "accuracy": 0.91, "macro_f1": 0.9}


def compression_report() -> dict:
    after = {**MEASURES, "nonzero_parameters": 650_000, "latency_ms_p50": 2.9, "throughput_batch32": 1010.0, "accuracy": 0.9}
    curve = [{"amount": a, "accuracy": round(0.91 - d / 100, 5), "accuracy_drop_points": d, "passed": d <= 2.0}
             for a, d in ((0.1, 0.0), (0.3, 0.4), (0.5, 1.1), (0.7, 3.6))]
    return {"kind": "prune", "before": MEASURES, "after": after,
            "ratios": {"size_ratio": 1.0, "throughput_speedup": 1.12, "accuracy_change_points": -1.0},
            "guard": {"max_accuracy_drop_points": 2.0, "accuracy_drop_points": 1.0, "passed": True},
            "search": {"chosen": 0.5, "curve": curve, "max_accuracy_drop_points": 2.0},
            "pruning": {"method": "magnitude", "amount": 0.5, "sparsity": 0.5}}


def add_loss(job: Job, step: int, loss: float) -> JobMetric:
    return JobMetric.objects.create(job=job, step=step, epoch=step / 10, values={"train_loss": loss, "learning_rate": 1e-4})


def chart_jobs(tenant, dataset, base_model) -> tuple[Job, Job]:
    """(a running fine-tune with metrics over two epochs, a succeeded prune job of it with its report)."""
    version = dataset.latest_version
    running = Job.objects.create(organization=tenant.organization, kind=JobKind.FINETUNE, state=JobState.RUNNING, attempts=1,
                                 name="live run", dataset_version=version, base_model=base_model, labels=["a", "b"],
                                 step=20, total_steps=30, epoch=2.0, latest_metrics={"train_loss": 0.6, "accuracy": 0.8})
    for step, loss in ((2, 1.4), (4, 1.3), (6, 1.15), (8, 1.0), (10, 0.9), (12, 0.82), (14, 0.75), (16, 0.7), (18, 0.66), (20, 0.6)):
        add_loss(running, step, loss)
        if step in (10, 20):
            JobMetric.objects.create(job=running, step=step, epoch=float(step // 10),
                                     values={"eval_loss": loss + 0.05, "accuracy": 0.7 + step / 200, "macro_f1": 0.65 + step / 200})
    pruned = Job.objects.create(organization=tenant.organization, kind=JobKind.PRUNE, state=JobState.SUCCEEDED, attempts=1,
                                dataset_version=version, base_model=base_model, labels=["a", "b"], source_job=running,
                                max_accuracy_drop=2.0, result={"compression": compression_report()})
    now = timezone.now()
    UsageSegment.objects.create(organization=tenant.organization, job=running, attempt=1, lease_token=uuid.uuid4(),
                                device_class="cpu", device_count=1, started_at=now - timedelta(seconds=600),
                                ended_at=now - timedelta(seconds=1), seconds=Decimal(600))
    return running, pruned
