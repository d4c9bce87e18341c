"""quantize on a chat model through the platform: a chat fine-tune run by the real runner, then int8 through
the API, run by the real runner to its measured report and artifacts; the downloaded card's code generates;
an impossible guard fails the job with the chat reading of max_accuracy_drop; prune and distill of a chat
model are a 400 naming the kind."""
from __future__ import annotations

import pytest

from jobs import lifecycle, runner
from jobs.models import Job, JobKind, JobState
from tests.card_runner import code_blocks, run_card, unzip
from tests.jobs import test_chat_job
from tests.jobs.test_chat_job import body

# The chat job tests' fixtures: a tiny LLaMA in the catalog, a chat dataset uploaded through the service, the API.
tiny_llama_dir, chat_model, chat_dataset, api = (test_chat_job.tiny_llama_dir, test_chat_job.chat_model,
                                                 test_chat_job.chat_dataset, test_chat_job.api)

pytestmark = pytest.mark.django_db(transaction=True)


def run(job_id: int) -> Job:
    claimed, token = lifecycle.job_claim(job_id=job_id, worker="test", device_class="cpu")
    runner.run_claimed_job(claimed, token)
    return Job.objects.get(pk=job_id)


def test_a_chat_fine_tune_is_quantized_to_int8_and_the_card_generates(api, client, tenant_a, chat_dataset, chat_model,
                                                                       tmp_path):
    source = api.post("/api/v1/jobs", body(chat_dataset), format="json")
    assert source.status_code == 201, source.content
    source_id = source.json()["id"]
    assert run(source_id).state == JobState.SUCCEEDED

    for kind, extra in (("prune", {"sparsity": 0.3}), ("distill", {})):
        refused = api.post("/api/v1/jobs", {"kind": kind, "source_job_id": source_id, **extra}, format="json")
        assert refused.status_code == 400, refused.content
        assert f"{kind} is not supported for chat models yet" in refused.json()["error"]["fields"]["kind"][0]
    client.force_login(tenant_a.owner)
    form = {"kind": "prune", "max_accuracy_drop": "5", "sparsity": "0.3"}
    client.post(f"/o/acme/jobs/{source_id}/compress", form)  # the chat page's form offers quantize only
    assert not Job.objects.exclude(pk=source_id).exists()
    queued = client.post(f"/o/acme/jobs/{source_id}/compress", {**form, "kind": "quantize"})
    dashboard_job = Job.objects.exclude(pk=source_id).get()
    assert queued.status_code == 302 and dashboard_job.kind == JobKind.QUANTIZE and dashboard_job.max_accuracy_drop == 5
    dashboard_job.delete()

    response = api.post("/api/v1/jobs", {"kind": "quantize", "source_job_id": source_id, "max_accuracy_drop": 100},
                        format="json")
    assert response.status_code == 201, response.content
    job = run(response.json()["id"])
    assert job.state == JobState.SUCCEEDED, job.failure_reason
    assert job.kind == JobKind.QUANTIZE
    report = api.get(f"/api/v1/jobs/{job.pk}").json()["result"]["compression"]
    assert report["task"] == "chat" and report["after"]["size_bytes"] < report["before"]["size_bytes"]
    assert report["guard"]["passed"] and "perplexity_increase_percent" in report["guard"]
    assert report["after"]["tokens_per_second_batch8"] > 0
    download = api.get(f"/api/v1/jobs/{job.pk}/artifacts/model.zip")
    folder, members = unzip(b"".join(download.streaming_content), tmp_path / "int8")
    assert {"chat_template.jinja", "generation_config.json", "model.int8.safetensors"} <= set(members)
    (code,) = code_blocks((folder / "README.md").read_text())
    assert isinstance(run_card(code + "\nlabel = reply\n", folder)["label"], str)

    page = client.get(f"/o/acme/jobs/{job.pk}")
    assert page.status_code == 200

    impossible = api.post("/api/v1/jobs", {"kind": "quantize", "source_job_id": source_id, "max_accuracy_drop": 0},
                          format="json")
    assert impossible.status_code == 201, impossible.content
    Job.objects.filter(pk=impossible.json()["id"]).update(max_accuracy_drop=-50)  # demands 50 % lower perplexity
    failed = run(impossible.json()["id"])
    assert failed.state == JobState.FAILED
    assert failed.failure_reason.startswith("Accuracy guard failed (chat model): validation perplexity rose")
    assert "more than the -50.0 allowed" in failed.failure_reason
