"""A chat fine-tune (kind chat_finetune) end to end on the platform: a chat dataset uploaded through the
real service, a tiny LLaMA in the catalog, the job submitted, quoted and refused through the API and the
dashboard, then run by the real runner (lease, heartbeat, metering) to its artifacts and its job page."""
from __future__ import annotations

import io
import json
import re
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from catalog.models import BaseModel, TaskFamily, WeightsSource
from jobs import lifecycle, runner
from jobs.models import Job, JobKind, JobState
from tenancy.actors import Actor
from tests.tiny_model import CHAT_FACTS, build_tiny_llama

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def chat_model(db, tiny_llama_dir):
    return BaseModel.objects.create(
        slug="tiny-llama", name="Tiny Llama", architecture="llama", task_family=TaskFamily.CHAT,
        source_kind=WeightsSource.PATH, source=str(tiny_llama_dir), supported_tasks=["chat"], default_max_length=64,
        context_length=256, parameter_count=60_000, chat_template_source="model", is_default=True)


def chat_jsonl() -> bytes:
    lines = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in CHAT_FACTS]
    lines.append({"prompt": "Say <script>alert(1)</script>", "completion": "<b>no</b>"})  # shown as text, never run
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


@pytest.fixture
def chat_dataset(tenant_a, media, chat_model):
    from corpora.services import dataset_upload

    version = dataset_upload(organization=tenant_a.organization, actor=Actor.for_membership(tenant_a.owner_membership),
                             uploaded=SimpleUploadedFile("facts.jsonl", chat_jsonl()), validation_fraction=0.3)
    assert version.task == "chat"
    return version.dataset


@pytest.fixture
def api(tenant_a, api_for):
    return api_for(tenant_a.key(scopes=["read", "write"]))


def body(dataset, **extra) -> dict:
    return {"kind": "chat_finetune", "dataset_id": dataset.pk, "base_model": "tiny-llama",
            "hyperparameters": {"epochs": 2, "batch_size": 4, "learning_rate": 3e-3}, **extra}


@pytest.mark.django_db(transaction=True)
def test_a_chat_fine_tune_is_submitted_run_metered_and_shown(api, client, tenant_a, chat_dataset, chat_model, tmp_path):
    quote = api.post("/api/v1/jobs/quote", body(chat_dataset), format="json")
    assert quote.status_code == 200, quote.content
    assert quote.json()["tokens"] > 0 and not Job.objects.exists()
    quoted_trained = quote.json()["trained_tokens"]
    assert 0 < quoted_trained < quote.json()["tokens"]  # the replies only, not the prompts

    response = api.post("/api/v1/jobs", body(chat_dataset), format="json")
    assert response.status_code == 201, response.content
    job = Job.objects.get(pk=response.json()["id"])
    assert (job.kind, job.method, job.labels) == (JobKind.CHAT_FINETUNE, "lora", [])  # LoRA unless asked otherwise
    # 'auto' resolved from the model and the data: LLaMA's attention and MLP projections, a length that fits
    assert set(job.spec["lora_targets"]) >= {"q_proj", "v_proj"} and 8 <= job.spec["max_length"] <= 256
    assert job.spec["epochs"] == 2 and response.json()["method"] == "lora"

    claimed, token = lifecycle.job_claim(job_id=job.pk, worker="test", device_class="cpu")
    assert runner.run_claimed_job(claimed, token) == JobState.SUCCEEDED
    job.refresh_from_db()
    assert job.result["best_metrics"]["eval_loss"] > 0 and job.result["train_tokens"] > 0
    assert job.result["throughput"]["tokens"] == job.result["input_tokens"]  # what the next quotes learn from
    assert job.result["train_tokens"] == quoted_trained  # the quote's trained tokens: what the worker trained on
    assert {"model.zip", "adapter.zip", "eval_report.json", "README.md"} <= set(job.artifacts.values_list("name", flat=True))
    detail = api.get(f"/api/v1/jobs/{job.pk}").json()
    assert detail["state"] == "succeeded" and detail["billed_seconds"] > 0

    download = api.get(f"/api/v1/jobs/{job.pk}/artifacts/model.zip")
    assert download.status_code == 200
    archive = zipfile.ZipFile(io.BytesIO(b"".join(download.streaming_content)))
    names = set(archive.namelist())
    assert any(n.endswith("model.safetensors") for n in names) and any(n.endswith("tokenizer_config.json") for n in names)
    folder = tmp_path / "downloaded"
    archive.extractall(folder)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = next(p.parent for p in folder.rglob("config.json"))
    tokenizer, model = AutoTokenizer.from_pretrained(root), AutoModelForCausalLM.from_pretrained(root)  # no peft needed
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": CHAT_FACTS[0][0]}], add_generation_prompt=True,
                                           return_tensors="pt", return_dict=True)
    assert model.generate(**prompt, max_new_tokens=3, do_sample=False).shape[1] > prompt["input_ids"].shape[1]

    client.force_login(tenant_a.owner)
    page = client.get(f"/o/acme/jobs/{job.pk}").content.decode()
    assert 'data-testid="chat-generations"' in page
    side_by_side = re.search(r'data-testid="chat-examples".*?</table>', page, re.S).group(0)
    shown = job.result["generation"]["examples"]
    assert len(shown) == min(10, job.result["generation"]["prompts"]) > 0  # every prompt is in generations.json
    assert side_by_side.count("<tr>") == len(shown) + 1 and shown[0]["reference"].split()[0] in side_by_side
    # the live line names what it shows: the last logged train loss and tokens/s, read as a person reads them
    status = re.search(r'data-testid="job-status".*?</section>', page, re.S).group(0)
    tokens_per_second = job.latest_metrics["tokens_per_second"]
    assert f'<span data-metric="tokens/s">tokens/s {tokens_per_second:,.0f}</span>' in status
    assert 'data-metric="train loss"' in status and "tokens_per_second" not in status
    epochs = re.search(r'data-testid="job-evaluations".*?</table>', page, re.S).group(0)
    assert "<th>perplexity</th>" in epochs and "accuracy" not in epochs
    assert f"{job.result['best_metrics']['perplexity']:.2f}" in epochs
    compress = re.search(r'data-testid="compress-form".*?</form>', page, re.S).group(0)  # chat models: int8 only
    assert re.findall(r'<option value="(\w+)"', re.search(r'name="kind".*?</select>', compress, re.S).group(0)) == ["quantize"]
    assert "perplexity increase" in compress and 'data-kind="prune"' not in compress
    assert "<script>alert(1)</script>" not in page  # the odd line's content is escaped wherever it shows


def test_chat_submissions_refuse_what_does_not_fit(api, chat_dataset, chat_model, dataset, tiny_bert):
    def refused(payload, field):
        response = api.post("/api/v1/jobs", payload, format="json")
        assert response.status_code == 400, response.content
        assert field in response.json()["error"]["fields"], response.json()
        return response.json()["error"]["fields"][field][0]

    assert "unknown hyperparameter" in refused(body(chat_dataset, hyperparameters={"epoch": 2}), "hyperparameters.epoch")
    assert "between 16 and" in refused(body(chat_dataset, hyperparameters={"max_length": 4}), "hyperparameters.max_length")
    assert "not a chat model" in refused(body(chat_dataset, base_model="tiny-bert"), "base_model")
    assert "chat" in refused(body(dataset), "dataset_id")  # a classification dataset
    # the classifier fine-tune refuses the chat pair too
    assert refused({"dataset_id": chat_dataset.pk, "base_model": "tiny-llama"}, "dataset_id")
    assert "LoRA" in refused(body(chat_dataset, method="full", hyperparameters={"lora_r": 4}), "method")
    assert not Job.objects.exists()


def test_the_jobs_page_launches_and_quotes_a_chat_fine_tune(client, tenant_a, chat_dataset, chat_model, dataset, tiny_bert):
    client.force_login(tenant_a.owner)
    page = client.get("/o/acme/jobs").content.decode()
    chat_form = re.search(r'data-testid="chat-launch-form".*?</form>', page, re.S).group(0)
    classifier_form = re.search(r'data-testid="launch-form".*?</form>', page, re.S).group(0)
    # each form offers its own family's models and datasets
    assert "Tiny Llama" in chat_form and "Tiny BERT" not in chat_form and "facts" in chat_form
    assert "Tiny Llama" not in classifier_form and "facts" not in classifier_form
    assert 'name="kind" value="chat_finetune"' in chat_form

    fields = {"kind": "chat_finetune", "dataset_id": chat_dataset.pk, "base_model": "tiny-llama", "method": "lora",
              "epochs": "1", "max_length": "4"}
    bad = client.post("/o/acme/jobs", fields)
    assert bad.status_code == 400 and not Job.objects.exists()
    assert "must be between" in bad.content.decode()  # the chat declaration's bound, shown on the field
    quote = client.post("/o/acme/jobs/quote", {**fields, "max_length": "64"}, HTTP_HX_REQUEST="true")
    assert quote.status_code == 200 and "error" not in quote.content.decode().lower()
    assert 'name="test_fraction"' in chat_form and "training conversations held out" in chat_form
    launched = client.post("/o/acme/jobs", {**fields, "max_length": "64", "test_fraction": "25"})
    job = Job.objects.get()
    assert launched.status_code == 302 and job.kind == JobKind.CHAT_FINETUNE and job.spec["max_length"] == 64
    assert job.test_fraction == 0.25  # the form's percent, the service's fraction


@pytest.mark.django_db(transaction=True)
def test_a_chat_fine_tune_with_its_own_validation_set_trains_on_the_whole_file(api, tenant_a, chat_dataset, chat_model):
    from corpora.services import dataset_upload
    from jobs.staging import fetch_dataset, job_folder
    from workers.chat.data import read_conversations

    held = dataset_upload(organization=tenant_a.organization, actor=Actor.for_membership(tenant_a.owner_membership),
                          uploaded=SimpleUploadedFile("checks.jsonl", chat_jsonl()), validation_fraction=0.3)
    response = api.post("/api/v1/jobs", body(chat_dataset, validation_dataset_id=held.dataset_id), format="json")
    assert response.status_code == 201, response.content
    assert response.json()["validation_dataset"]["id"] == held.dataset_id
    job = Job.objects.get(pk=response.json()["id"])
    train, validation = fetch_dataset(job, job_folder(job))
    version = job.dataset_version
    assert len(read_conversations(str(train))) == version.train_count + version.validation_count
    assert len(read_conversations(str(validation))) == held.train_count + held.validation_count
    claimed, token = lifecycle.job_claim(job_id=job.pk, worker="test", device_class="cpu")
    assert runner.run_claimed_job(claimed, token) == JobState.SUCCEEDED
    refused = api.post("/api/v1/jobs", body(chat_dataset, validation_dataset_id=chat_dataset.pk), format="json")
    assert refused.status_code == 400 and "validation_dataset_id" in refused.json()["error"]["fields"]


@pytest.mark.django_db(transaction=True)
def test_a_chat_fine_tune_carves_a_test_set_and_reports_its_score_after_training(api, client, tenant_a, chat_dataset,
                                                                                 chat_model, tmp_path):
    from jobs.staging import held_out_rows, job_folder

    response = api.post("/api/v1/jobs", body(chat_dataset, test_fraction=0.25), format="json")
    assert response.status_code == 201, response.content
    job = Job.objects.get(pk=response.json()["id"])
    assert job.test_fraction == 0.25 and "25% of the train split carved as a test split" in job.events.get().message
    pending = api.get(f"/api/v1/jobs/{job.pk}").json()["evaluation"]
    assert pending["test"]["split"] == "test" and pending["test"]["metrics"] is None

    claimed, token = lifecycle.job_claim(job_id=job.pk, worker="test", device_class="cpu")
    assert runner.run_claimed_job(claimed, token) == JobState.SUCCEEDED
    job.refresh_from_db()
    measured = job.result["test_metrics"]
    held = held_out_rows(job, job_folder(job) / "held")  # what a comparison scores on: the worker's own carve
    assert measured["conversations"] == len(held) == round(job.dataset_version.train_count * 0.25) > 0
    assert 0.0 <= measured["exact_match"] <= 1.0 and 0.0 <= measured["token_f1"] <= 1.0 and measured["eval_loss"] > 0
    evaluation = api.get(f"/api/v1/jobs/{job.pk}").json()["evaluation"]
    assert evaluation["test"]["rows"] == len(held)
    assert evaluation["test"]["metrics"]["exact_match"] == measured["exact_match"]
    assert "Selection split" in evaluation["selection"]["description"]
    report = json.loads(b"".join(api.get(f"/api/v1/jobs/{job.pk}/artifacts/eval_report.json").streaming_content))
    assert report["test"]["token_f1"] == measured["token_f1"]

    client.force_login(tenant_a.owner)
    page = client.get(f"/o/acme/jobs/{job.pk}").content.decode()
    row = re.search(r'<tr data-split="test">.*?</tr>', page, re.S).group(0)
    assert "Test (held out)" in row and f"{measured['token_f1']:.4f}" in row


def test_a_chat_test_set_is_attached_or_refused_by_name(api, tenant_a, chat_dataset, chat_model, dataset):
    from corpora.services import dataset_upload

    held = dataset_upload(organization=tenant_a.organization, actor=Actor.for_membership(tenant_a.owner_membership),
                          uploaded=SimpleUploadedFile("exam.jsonl", chat_jsonl()), validation_fraction=0.3)

    def refused(extra, field):
        response = api.post("/api/v1/jobs", body(chat_dataset, **extra), format="json")
        assert response.status_code == 400, response.content
        assert field in response.json()["error"]["fields"], response.json()
        return response.json()["error"]["fields"][field][0]

    assert "chat" in refused({"test_dataset_id": dataset.pk}, "test_dataset_id")  # a classification dataset
    assert "not both" in refused({"test_dataset_id": held.dataset_id, "test_fraction": 0.2}, "test_fraction")
    assert "0.5" in refused({"test_fraction": 0.9}, "test_fraction")
    assert "training data itself" in refused({"test_dataset_id": chat_dataset.pk}, "test_dataset_id")
    assert "validation set" in refused({"test_dataset_id": held.dataset_id, "validation_dataset_id": held.dataset_id},
                                       "test_dataset_id")
    assert not Job.objects.exists()

    response = api.post("/api/v1/jobs", body(chat_dataset, test_dataset_id=held.dataset_id), format="json")
    assert response.status_code == 201, response.content
    job = Job.objects.get(pk=response.json()["id"])
    assert job.test_dataset_version_id == held.pk and job.test_fraction is None
    evaluation = api.get(f"/api/v1/jobs/{job.pk}").json()["evaluation"]
    assert evaluation["test"]["rows"] == held.train_count + held.validation_count
    assert "exam v1 (every row)" in evaluation["test"]["description"]


def test_a_chat_quote_learns_from_chat_jobs_only(api, tenant_a, chat_dataset, chat_model, dataset, tiny_bert):
    """A causal LM's token·parameters/s is not an encoder's: a classifier LoRA's history leaves a chat LoRA's
    quote where it was; a measured chat LoRA moves it."""
    from tests.jobs.history import measured_job

    def quote():
        response = api.post("/api/v1/jobs/quote", body(chat_dataset), format="json")
        assert response.status_code == 200, response.content
        return response.json()

    first = quote()
    assert first["history_jobs"] == 0 and "default throughput for chat-lora on cpu" in first["basis"]
    measured_job(tenant_a.organization, dataset.latest_version, tiny_bert, method="lora", tokens_per_second=1e6,
                 parameters=chat_model.parameter_count)
    assert quote()["estimated_seconds"] == first["estimated_seconds"] and quote()["history_jobs"] == 0
    tokens = first["tokens"]
    measured_job(tenant_a.organization, chat_dataset.latest_version, chat_model, kind=JobKind.CHAT_FINETUNE,
                 method="chat-lora", tokens_per_second=tokens / 300, tokens=tokens, startup=60.0)
    learned = quote()
    assert learned["history_jobs"] == 1 and learned["method"] == "chat-lora"
    assert abs(learned["estimated_seconds"] - 360) <= 360 * 0.05  # its 300 s of work + 60 s startup
