"""A chat fine-tune survives its worker (issue 15): a real Celery worker process is killed with SIGKILL
after a checkpoint, the reaper re-queues the job, a second worker resumes it from the checkpoint and it
succeeds with its side-by-side generations; the dead attempt bills nothing after the kill."""
from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from billing.models import UsageSegment
from catalog.models import BaseModel, TaskFamily, WeightsSource
from jobs.models import JobEvent, JobState
from tenancy.actors import Actor
from tests.celery_worker import celery_worker
from tests.tiny_model import CHAT_FACTS, build_tiny_llama

from .test_worker_faults import reap_when_expired
from .worker_helpers import job_state, kill_after_first_checkpoint, wait_for, worker_env

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama-faults"))


@pytest.fixture
def long_chat_dataset(tenant_a, media, llama_dir):
    """60 distinct conversations: with batch 1 and 20 epochs, ~1,100 steps — long enough to kill a worker mid-run."""
    from corpora.services import dataset_upload

    BaseModel.objects.create(
        slug="tiny-llama", name="Tiny Llama", architecture="llama", task_family=TaskFamily.CHAT,
        source_kind=WeightsSource.PATH, source=str(llama_dir), supported_tasks=["chat"], default_max_length=64,
        context_length=256, parameter_count=60_000, chat_template_source="model", is_default=True)
    lines = [{"messages": [{"role": "user", "content": f"{q} (question {i})"}, {"role": "assistant", "content": a}]}
             for i in range(5) for q, a in CHAT_FACTS]
    content = "".join(json.dumps(line) + "\n" for line in lines).encode()
    version = dataset_upload(organization=tenant_a.organization, actor=Actor.for_membership(tenant_a.owner_membership),
                             uploaded=SimpleUploadedFile("facts.jsonl", content), validation_fraction=0.1)
    return version.dataset


def test_killed_worker_mid_chat_fine_tune_is_replaced_and_the_job_resumes(tmp_path, fast_jobs, tenant_a, api_for,
                                                                          long_chat_dataset):
    client = api_for(tenant_a.key(scopes=["write"]))
    env = worker_env(fast_jobs, tmp_path)
    with celery_worker(tmp_path / "a.log", extra_env=env) as (queue, first):
        fast_jobs.LATHE_DEFAULT_QUEUE = queue
        response = client.post("/api/v1/jobs", {
            "kind": "chat_finetune", "dataset_id": long_chat_dataset.pk, "base_model": "tiny-llama",
            "hyperparameters": {"epochs": 20, "batch_size": 1, "learning_rate": 3e-3, "early_stopping_patience": 0}},
            format="json")
        assert response.status_code == 201, response.content
        job_id = response.json()["id"]
        checkpoint, killed_at = kill_after_first_checkpoint(job_id, first)
    reap_when_expired(job_id)
    with celery_worker(tmp_path / "b.log", queue=queue, extra_env=env):
        job = wait_for(lambda: (j := job_state(job_id)).is_terminal and j, timeout=600, message="the resumed job to finish")
    assert job.state == JobState.SUCCEEDED and job.attempts == 2, job.failure_reason
    resumed = JobEvent.objects.filter(job_id=job_id, attempt=2, message__startswith="Resumed from checkpoint at step").first()
    assert resumed is not None
    assert int(resumed.message.split("step ")[1].split(" ")[0]) >= checkpoint.step
    assert job.result["global_step"] == job.result["total_steps"]
    assert job.result["generation"]["prompts"] > 0 and "exact_match" in job.result["generation"]["finetuned"]
    assert {a.name for a in job.artifacts.all()} >= {"adapter.zip", "model.zip"}
    first_attempt = UsageSegment.objects.filter(job_id=job_id, attempt=1)
    assert first_attempt.exists() and all(s.ended_at <= killed_at for s in first_attempt)
    assert UsageSegment.objects.filter(job_id=job_id, attempt=2).exists()
