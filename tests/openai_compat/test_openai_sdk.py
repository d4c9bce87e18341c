"""The OpenAI-compatible surface proven with the real, pinned `openai` SDK talking HTTP to a live test server:
files, fine-tuning jobs (one run to success in-process by the real runner), events and checkpoints with the
SDK's own auto-pagination, models, and errors surfacing as the SDK's exception classes."""
from __future__ import annotations

import openai
import pytest

from jobs import lifecycle, runner
from jobs.models import Job, JobEvent, JobState

from .conftest import chat_jsonl

pytestmark = pytest.mark.django_db(transaction=True)


def sdk(live_server, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=live_server.url + "/v1", api_key=key, max_retries=0)


@pytest.fixture
def client(live_server, tenant_a, media, chat_model):
    return sdk(live_server, tenant_a.key())  # read, write and admin: it deletes files and models too


def supervised(**hyperparameters) -> dict:
    return {"type": "supervised", "supervised": {"hyperparameters": hyperparameters}}


def test_a_fine_tune_from_upload_to_model_through_the_sdk(client, tenant_a):
    uploaded = client.files.create(file=("facts.jsonl", chat_jsonl()), purpose="fine-tune")
    assert uploaded.id.startswith("file-") and uploaded.object == "file" and uploaded.purpose == "fine-tune"
    assert uploaded.status == "processed" and uploaded.bytes == len(chat_jsonl()) and uploaded.filename == "facts.jsonl"
    assert [f.id for f in client.files.list(purpose="fine-tune")] == [uploaded.id]
    assert list(client.files.list(purpose="batch")) == []
    assert client.files.retrieve(uploaded.id).filename == "facts.jsonl"
    assert client.files.content(uploaded.id).content == chat_jsonl()

    with pytest.raises(openai.BadRequestError) as refused:
        client.fine_tuning.jobs.create(model="gpt-4o-mini-2024-07-18", training_file=uploaded.id)
    assert refused.value.param == "model" and "tiny-llama" in refused.value.message
    assert "openai-migration" in refused.value.message and not Job.objects.exists()

    created = client.fine_tuning.jobs.create(
        model="tiny-llama", training_file=uploaded.id, suffix="facts", seed=7, metadata={"team": "search"},
        method=supervised(n_epochs=2, batch_size=4, learning_rate_multiplier=2),
        integrations=[{"type": "wandb", "wandb": {"project": "x"}}])
    assert created.id.startswith("ftjob-") and created.status == "queued" and created.fine_tuned_model is None
    assert created.hyperparameters.n_epochs == 2 and created.hyperparameters.batch_size == 4
    assert created.hyperparameters.learning_rate_multiplier == pytest.approx(2.0)
    assert created.seed == 7 and created.metadata == {"team": "search"} and created.model == "tiny-llama"
    assert created.training_file == uploaded.id and created.integrations == []
    extension = created.model_extra["lathe"]
    assert "integrations" in extension["unsupported"] and extension["method"] == "lora"
    job = Job.objects.get()
    assert job.spec["epochs"] == 2 and job.spec["seed"] == 7
    # the multiplier scales the rate 'auto' picks (LoRA on a model this small: 2e-4)
    assert job.spec["learning_rate"] == pytest.approx(2 * 2e-4)

    claimed, token = lifecycle.job_claim(job_id=job.pk, worker="test", device_class="cpu")
    assert runner.run_claimed_job(claimed, token) == JobState.SUCCEEDED

    done = client.fine_tuning.jobs.retrieve(created.id)
    assert done.status == "succeeded" and done.finished_at and done.trained_tokens > 0
    assert done.fine_tuned_model == f"ft:tiny-llama:acme:facts:{job.pk}" and done.error is None
    assert done.model_extra["lathe"]["billed_seconds"] > 0
    assert {"model.zip", "adapter.zip"} <= {a["name"] for a in done.model_extra["lathe"]["artifacts"]}

    # auto-pagination over the cursor (two events a page) reaches every event, newest first
    events = list(client.fine_tuning.jobs.list_events(created.id, limit=2))
    assert [e.id for e in events] == [f"ftevent-{pk}" for pk in JobEvent.objects.filter(job=job).order_by("-pk")
                                      .values_list("pk", flat=True)]
    assert len(events) > 2 and all(e.object == "fine_tuning.job.event" and e.message for e in events)
    checkpoints = client.fine_tuning.jobs.checkpoints.list(created.id).data
    assert checkpoints and all(c.step_number > 0 and c.fine_tuning_job_id == created.id for c in checkpoints)
    assert checkpoints[0].fine_tuned_model_checkpoint.startswith(done.fine_tuned_model + ":ckpt-step-")
    assert checkpoints[0].metrics.step == checkpoints[0].step_number

    assert {m.id for m in client.models.list()} == {"tiny-llama", done.fine_tuned_model}
    assert client.models.retrieve(done.fine_tuned_model).owned_by == "org-acme"
    assert [j.id for j in client.fine_tuning.jobs.list(metadata={"team": "search"})] == [created.id]
    assert list(client.fine_tuning.jobs.list(metadata={"team": "other"})) == []

    second = client.fine_tuning.jobs.create(model="tiny-llama", training_file=uploaded.id,
                                            hyperparameters={"n_epochs": "auto"})
    assert second.hyperparameters.learning_rate_multiplier == pytest.approx(1.0)  # 'auto' is the base itself
    assert client.fine_tuning.jobs.cancel(second.id).status == "cancelled"
    with pytest.raises(openai.ConflictError):
        client.fine_tuning.jobs.cancel(second.id)
    with pytest.raises(openai.ConflictError, match="already ended"):
        client.fine_tuning.jobs.pause(second.id)
    with pytest.raises(openai.ConflictError, match="Only a paused job"):
        client.fine_tuning.jobs.resume(second.id)
    listed = client.fine_tuning.jobs.list(limit=1)
    assert [j.id for j in listed.data] == [second.id] and listed.has_more  # newest first, one a page
    following = listed.get_next_page()
    assert [j.id for j in following.data] == [created.id] and not following.has_more
    assert [j.id for j in client.fine_tuning.jobs.list(limit=1)] == [second.id, created.id]  # the SDK follows the cursor

    with pytest.raises(openai.ConflictError, match="used by"):
        client.files.delete(uploaded.id)
    assert client.models.delete(done.fine_tuned_model).deleted
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve(done.fine_tuned_model)
    assert not job.artifacts.exists() and {m.id for m in client.models.list()} == {"tiny-llama"}
    unused = client.files.create(file=("more.jsonl", chat_jsonl()), purpose="fine-tune")
    assert client.files.delete(unused.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(unused.id)


def test_pause_and_resume_through_the_sdk(client, tenant_a):
    """A running job paused through the SDK stops at its next step with a checkpoint (the real runner, in process),
    reads `paused`, and resumed continues from that checkpoint to success; a queued one pauses at once."""
    uploaded = client.files.create(file=("facts.jsonl", chat_jsonl()), purpose="fine-tune")
    created = client.fine_tuning.jobs.create(model="tiny-llama", training_file=uploaded.id, method=supervised(n_epochs=2))
    queued = client.fine_tuning.jobs.pause(created.id)
    assert queued.status == "paused" and queued.finished_at is None
    with pytest.raises(openai.ConflictError, match="already paused"):
        client.fine_tuning.jobs.pause(created.id)
    assert client.fine_tuning.jobs.resume(created.id).status == "queued"

    job = Job.objects.get()
    claimed, token = lifecycle.job_claim(job_id=job.pk, worker="test", device_class="cpu")
    pausing = client.fine_tuning.jobs.pause(created.id)
    assert pausing.status == "running" and pausing.model_extra["lathe"]["pause_requested"]  # until its next step
    assert runner.run_claimed_job(claimed, token) == JobState.PAUSED
    paused = client.fine_tuning.jobs.retrieve(created.id)
    assert paused.status == "paused" and paused.error is None and paused.fine_tuned_model is None
    assert not paused.model_extra["lathe"]["pause_requested"]
    steps = [c.step_number for c in client.fine_tuning.jobs.checkpoints.list(created.id).data]
    stopped_at = Job.objects.get().result["global_step"]
    assert stopped_at in steps and stopped_at < Job.objects.get().total_steps

    assert client.fine_tuning.jobs.resume(created.id).status == "queued"
    claimed, token = lifecycle.job_claim(job_id=job.pk, worker="test", device_class="cpu")
    assert runner.run_claimed_job(claimed, token) == JobState.SUCCEEDED
    done = client.fine_tuning.jobs.retrieve(created.id)
    assert done.status == "succeeded" and done.fine_tuned_model
    messages = [e.message for e in client.fine_tuning.jobs.list_events(created.id)]
    assert any(m.startswith(f"Resumed from checkpoint at step {stopped_at} ") for m in messages), messages
    assert Job.objects.get().attempts == 2


def test_errors_surface_as_the_sdks_exceptions(live_server, client, tenant_a, make_tenant):
    from corpora.models import DatasetVersion

    with pytest.raises(openai.BadRequestError) as malformed:
        client.files.create(file=("bad.jsonl", chat_jsonl() + b'{"messages": [\n'), purpose="fine-tune")
    assert malformed.value.param == "file" and "line" in malformed.value.message.lower()
    assert not DatasetVersion.objects.exists()
    # valid JSON but no conversation: Lathe's preflight would train on the rest; OpenAI's contract refuses the file
    odd = chat_jsonl([{"messages": [{"role": "robot", "content": "beep"}]}])
    writer = sdk(live_server, tenant_a.key(scopes=["read", "write"]))  # no admin scope: it may not delete datasets
    with pytest.raises(openai.BadRequestError) as rejected:
        writer.files.create(file=("odd.jsonl", odd), purpose="fine-tune")
    last_line = odd.count(b"\n")
    assert rejected.value.param == "file" and f"line {last_line}" in rejected.value.message, rejected.value.message
    assert not DatasetVersion.objects.exists()
    with pytest.raises(openai.BadRequestError) as purpose:
        client.files.create(file=("facts.jsonl", chat_jsonl()), purpose="assistants")
    assert purpose.value.param == "purpose"

    uploaded = client.files.create(file=("facts.jsonl", chat_jsonl()), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError) as validation:
        client.fine_tuning.jobs.create(model="tiny-llama", training_file=uploaded.id, validation_file=uploaded.id)
    assert validation.value.param == "validation_file" and "is the training_file" in validation.value.message
    with pytest.raises(openai.BadRequestError) as unknown_validation:
        client.fine_tuning.jobs.create(model="tiny-llama", training_file=uploaded.id, validation_file="file-999999")
    assert unknown_validation.value.param == "validation_file"
    held_back = client.files.create(file=("checks.jsonl", chat_jsonl()), purpose="fine-tune")
    validated = client.fine_tuning.jobs.create(model="tiny-llama", training_file=uploaded.id,
                                               validation_file=held_back.id)
    assert client.fine_tuning.jobs.retrieve(validated.id).validation_file == held_back.id
    stored = Job.objects.get(pk=int(validated.id.split("-")[1]))
    assert stored.validation_dataset_version.pk == int(held_back.id.split("-")[1])
    client.fine_tuning.jobs.cancel(validated.id)
    with pytest.raises(openai.BadRequestError) as epochs:
        client.fine_tuning.jobs.create(model="tiny-llama", training_file=uploaded.id, method=supervised(n_epochs=500))
    assert epochs.value.param == "method.supervised.hyperparameters.n_epochs"
    with pytest.raises(openai.BadRequestError) as dpo:
        client.fine_tuning.jobs.create(model="tiny-llama", training_file=uploaded.id, method={"type": "dpo"})
    assert dpo.value.param == "method.type"
    with pytest.raises(openai.BadRequestError) as missing:
        client.fine_tuning.jobs.create(model="tiny-llama", training_file="file-999999")
    assert missing.value.param == "training_file"
    job = client.fine_tuning.jobs.create(model="tiny-llama", training_file=uploaded.id,
                                         extra_headers={"Idempotency-Key": "once"})
    again = client.fine_tuning.jobs.create(model="tiny-llama", training_file=uploaded.id,
                                           extra_headers={"Idempotency-Key": "once"})
    assert again.id == job.id and Job.objects.count() == 2  # this one and the validated one above
    with pytest.raises(openai.ConflictError):
        client.fine_tuning.jobs.create(model="tiny-llama", training_file=uploaded.id, suffix="other",
                                       extra_headers={"Idempotency-Key": "once"})

    # A base model is not served (only fine-tunes are): the 404 says what to call instead.
    with pytest.raises(openai.NotFoundError, match="Base models are not served: fine-tune it, then call the ft:"):
        client.chat.completions.create(model="tiny-llama", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.AuthenticationError):
        sdk(live_server, "lth_not-a-key").models.list()
    other = sdk(live_server, make_tenant("Beta", "owner-b@example.com").key(scopes=["read", "write"]))
    for call in (lambda: other.fine_tuning.jobs.retrieve(job.id), lambda: other.fine_tuning.jobs.cancel(job.id),
                 lambda: other.fine_tuning.jobs.pause(job.id), lambda: other.fine_tuning.jobs.resume(job.id),
                 lambda: other.fine_tuning.jobs.list_events(job.id), lambda: other.files.retrieve(uploaded.id),
                 lambda: other.files.delete(uploaded.id), lambda: other.fine_tuning.jobs.retrieve("ftjob-x")):
        with pytest.raises(openai.NotFoundError):
            call()
    assert list(other.fine_tuning.jobs.list()) == [] and list(other.files.list()) == []
    with pytest.raises(openai.PermissionDeniedError):
        sdk(live_server, tenant_a.key(scopes=["read"])).fine_tuning.jobs.cancel(job.id)
    assert Job.objects.get(pk=int(job.id.split("-")[1])).state == JobState.QUEUED


def test_a_rate_limited_caller_gets_the_sdks_rate_limit_error(live_server, client, tenant_a):
    from billing.models import Plan

    Plan.objects.update(api_rate="2/min")
    client.models.list()
    client.models.list()
    with pytest.raises(openai.RateLimitError) as limited:
        client.models.list()
    assert int(limited.value.response.headers["retry-after"]) > 0
    assert limited.value.body["type"] == "requests" and limited.value.code == "rate_limit_exceeded"
