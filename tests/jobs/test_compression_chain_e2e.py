"""A chain through the product, on a real worker: fine-tune → distill into a
one-layer student → prune it (amount searched within the guard, then a
recovery fine-tune that keeps the zeros) → quantize. Each link's numbers are
measured, each output downloads and loads, and what the chain refuses is a
400 naming the field."""
from __future__ import annotations

import io
import json
import zipfile

import pytest
from safetensors.torch import load_file

from jobs.models import JobState
from tests.card_runner import check_named_files, code_blocks, run_card
from tests.celery_worker import celery_worker
from tests.dashboard.chart_data import chart_data

from .worker_helpers import job_state, wait_for, worker_env

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def _wait(job_id, what):
    job = wait_for(lambda: (j := job_state(job_id)).is_terminal and j, timeout=240, message=what)
    assert job.state == JobState.SUCCEEDED, (what, job.failure_reason)
    return job


def _download(client, job_id, name, folder):
    archive = b"".join(client.get(f"/api/v1/jobs/{job_id}/artifacts/{name}").streaming_content)
    zipfile.ZipFile(io.BytesIO(archive)).extractall(folder)
    return folder


def test_finetune_distill_prune_quantize(tmp_path, fast_jobs, tenant_a, api_for, dataset, tiny_bert):
    client = api_for(tenant_a.key(scopes=["write"]))
    with celery_worker(tmp_path / "worker.log", extra_env=worker_env(fast_jobs, tmp_path)) as (queue, _process):
        fast_jobs.LATHE_DEFAULT_QUEUE = queue
        # The fine-tune carves a test split and refits on train + validation: the chain is judged on the test split.
        response = client.post("/api/v1/jobs", {"dataset_id": dataset.pk, "base_model": "tiny-bert", "test_fraction": 0.2,
                                                "hyperparameters": {"epochs": 3, "batch_size": 8, "learning_rate": 3e-3,
                                                                    "refit": True}}, format="json")
        assert response.status_code == 201, response.content
        teacher_id = response.json()["id"]
        _wait(teacher_id, "the fine-tune")
        response = client.post("/api/v1/jobs", {"kind": "distill", "source_job_id": teacher_id, "student_layers": 1,
                                                "temperature": 2.0, "max_accuracy_drop": 100,
                                                "hyperparameters": {"epochs": 2, "batch_size": 8, "learning_rate": 3e-3}},
                               format="json")
        assert response.status_code == 201, response.content
        distilled = _wait(response.json()["id"], "the distillation")
        response = client.post("/api/v1/jobs", {"kind": "prune", "source_job_id": distilled.pk, "prune_method": "magnitude",
                                                "sparsity": "auto", "recovery_epochs": 1, "max_accuracy_drop": 5,
                                                "hyperparameters": {"batch_size": 8, "learning_rate": 1e-3}}, format="json")
        assert response.status_code == 201, response.content
        pruned = _wait(response.json()["id"], "the prune job")
        response = client.post("/api/v1/jobs", {"kind": "quantize", "source_job_id": pruned.pk, "max_accuracy_drop": 100},
                               format="json")
        assert response.status_code == 201, response.content
        quantized = _wait(response.json()["id"], "the quantize job")

    # Every link is measured on the rows the refit fine-tune held out, none of them on its validation split.
    teacher = job_state(teacher_id)
    held_out = teacher.result["test_metrics"]["rows"]
    assert teacher.result["refit"] and held_out > 0
    for link in (distilled, pruned, quantized):
        measured = link.result["compression"]["measured_on"]
        assert measured["rows"] == held_out == link.result["compression"]["before"]["eval_rows"], link.kind
        assert f"test split of job {teacher_id}" in measured["what"], link.kind

    # Distillation: a one-layer student cut from the two-layer teacher, trained on its logits.
    report = distilled.result["compression"]
    assert report["distillation"]["student_layers"] == 1 and report["distillation"]["teacher_layers"] == 2
    assert report["after"]["parameters"] < report["before"]["parameters"]
    student = _download(client, distilled.pk, "model.zip", tmp_path / "student")
    assert json.loads((student / "config.json").read_text())["num_hidden_layers"] == 1
    body = client.get(f"/api/v1/jobs/{distilled.pk}").json()
    assert body["source_job"] == teacher_id and body["kind"] == "distill" and body["billed_seconds"] > 0

    # Pruning: the search's curve, its choice within the guard, zeros kept through recovery.
    report = pruned.result["compression"]
    search = report["search"]
    assert search["curve"] and search["chosen"] is not None
    assert all(p["passed"] == (p["accuracy_drop_points"] <= 5) for p in search["curve"])
    assert max(p["amount"] for p in search["curve"] if p["passed"]) == search["chosen"]
    assert all(p["amount"] > search["chosen"] for p in search["curve"] if not p["passed"])
    assert report["pruning"]["amount"] == search["chosen"] and report["recovery"]["epochs"] == 1
    recovery = report["recovery"]  # the better of one-shot and recovered is delivered, never a worse one
    assert recovery["delivered"] == ("one-shot" if recovery["accuracy_recovered"] < recovery["accuracy_one_shot"]
                                     else "recovered")
    weights = load_file(_download(client, pruned.pk, "model.zip", tmp_path / "pruned") / "model.safetensors")
    encoder = [w for name, w in weights.items() if "encoder" in name and name.endswith(".weight") and w.ndim == 2]
    zeros = sum(int((w == 0).sum()) for w in encoder) / sum(w.numel() for w in encoder)
    assert abs(zeros - search["chosen"]) < 0.01, "recovery let pruned weights grow back"
    events = [e["message"] for e in client.get(f"/api/v1/jobs/{pruned.pk}/events").json()["results"]]
    assert any("recovery fine-tune (zeros kept)" in m for m in events)

    # Quantizing the pruned student: the last link.
    assert quantized.result["compression"]["after"]["size_bytes"] < quantized.result["compression"]["before"]["size_bytes"]
    again = client.post("/api/v1/jobs", {"kind": "quantize", "source_job_id": quantized.pk}, format="json")
    assert again.status_code == 400 and "source_job_id" in again.json()["error"]["fields"]
    assert "already int8" in again.json()["error"]["message"]

    # The dashboard shows the report side by side, the search's curve and the variants of the int8 job.
    from django.test import Client

    browser = Client()
    browser.force_login(tenant_a.owner)
    page = browser.get(f"/o/{tenant_a.organization.slug}/jobs/{pruned.pk}").content.decode()
    assert 'data-testid="compression-chart"' in page and 'data-testid="search-curve"' in page
    assert len(chart_data(page, "compression-chart-data")) == 6
    assert [p["amount"] for p in chart_data(page, "search-curve-data")["points"]] == [p["amount"] for p in search["curve"]]
    page = browser.get(f"/o/{tenant_a.organization.slug}/jobs/{quantized.pk}").content.decode()
    assert "model-onnx-int8.zip" in page and "(recommended)" in page
    assert 'data-testid="compress-form"' not in page  # int8 ends a chain

    # The pruned model loads and predicts with its model card's code.
    folder = tmp_path / "pruned"
    card = (folder / "README.md").read_text()
    check_named_files(card, [p.name for p in folder.iterdir()], {a["name"] for a in client.get(
        f"/api/v1/jobs/{pruned.pk}/artifacts").json()})
    assert "## Training hyperparameters (recovery fine-tune)" in card and "| batch_size | 8 | you |" in card
    assert run_card(code_blocks(card)[0], folder)["label"] in pruned.labels


@pytest.mark.parametrize("body, field", [
    ({"kind": "prune", "sparsity": 1.5}, "sparsity"),
    ({"kind": "prune", "sparsity": "lots"}, "sparsity"),
    ({"kind": "prune", "sparsity": 0.3, "prune_method": "rows"}, "prune_method"),
    ({"kind": "prune", "sparsity": 0.3, "recovery_epochs": 99}, "recovery_epochs"),
    ({"kind": "quantize", "recovery_epochs": 1}, "recovery_epochs"),
    ({"kind": "distill", "temperature": 0}, "temperature"),
    ({"kind": "distill", "student_base_model": "nope"}, "student_base_model"),
    ({"kind": "distill", "hyperparameters": {"lora_r": 4}}, "hyperparameters"),
    ({"kind": "quantize", "hyperparameters": {"epochs": 2}}, "hyperparameters"),
    ({"kind": "distill", "hyperparameters": {"epochs": 0}}, "hyperparameters.epochs"),
])
def test_bad_compression_options_name_the_field_and_write_nothing(tenant_a, api_for, dataset, tiny_bert, body, field):
    from jobs.models import Job, JobArtifact, JobKind

    client = api_for(tenant_a.key(scopes=["write"]))
    source = Job.objects.create(organization=tenant_a.organization, kind=JobKind.FINETUNE, state=JobState.SUCCEEDED,
                                dataset_version=dataset.latest_version, base_model=tiny_bert, labels=sorted(
                                    dataset.latest_version.report["labels"]["counts"]), spec={"max_length": 32})
    JobArtifact.objects.create(job=source, organization=source.organization, name="model.zip", kind="model",
                               storage_name="x", size_bytes=1, sha256="0" * 64)
    before = Job.objects.count()
    response = client.post("/api/v1/jobs", {"source_job_id": source.pk, **body}, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"], response.json()
    assert Job.objects.count() == before
