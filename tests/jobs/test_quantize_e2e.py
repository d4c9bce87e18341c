"""Quantize through the product: a real worker fine-tunes, then quantizes the
result; the report's numbers are measured; the downloaded int8 model loads and
predicts with the code printed in its model card; an unmeetable guard fails the
job with the reason."""
from __future__ import annotations

import pytest

from jobs import runner
from jobs.models import Job, JobState
from tests.card_runner import check_named_files, code_blocks, run_card, unzip
from tests.celery_worker import celery_worker

from .worker_helpers import job_state, submit, wait_for, worker_env

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def test_finetune_then_quantize(tmp_path, fast_jobs, tenant_a, api_for, dataset, tiny_bert):
    client = api_for(tenant_a.key(scopes=["write"]))
    with celery_worker(tmp_path / "worker.log", extra_env=worker_env(fast_jobs, tmp_path)) as (queue, _process):
        fast_jobs.LATHE_DEFAULT_QUEUE = queue
        source_id = submit(client, dataset, epochs=2)
        wait_for(lambda: job_state(source_id).state == JobState.SUCCEEDED, timeout=180, message="the fine-tune")
        response = client.post("/api/v1/jobs", {"kind": "quantize", "source_job_id": source_id, "max_accuracy_drop": 100},
                               format="json")
        assert response.status_code == 201, response.content
        job_id = response.json()["id"]
        job = wait_for(lambda: (j := job_state(job_id)).is_terminal and j, timeout=180, message="the quantize job")
        pruned = client.post("/api/v1/jobs", {"kind": "prune", "source_job_id": source_id, "sparsity": 0.3,
                                              "max_accuracy_drop": 100}, format="json")
        assert pruned.status_code == 201, pruned.content
        prune_job = wait_for(lambda: (j := job_state(pruned.json()["id"])).is_terminal and j, timeout=180, message="the prune job")
    assert prune_job.state == JobState.SUCCEEDED, prune_job.failure_reason
    assert abs(prune_job.result["compression"]["pruning"]["sparsity"] - 0.3) < 0.01
    no_sparsity = client.post("/api/v1/jobs", {"kind": "prune", "source_job_id": source_id}, format="json")
    assert no_sparsity.status_code == 400 and "sparsity" in no_sparsity.json()["error"]["fields"]
    assert job.state == JobState.SUCCEEDED, (job.failure_reason, (tmp_path / "worker.log").read_text()[-3000:])
    body = client.get(f"/api/v1/jobs/{job_id}").json()
    report = body["result"]["compression"]
    assert body["kind"] == "quantize" and body["source_job"] == source_id and body["billed_seconds"] > 0
    assert report["after"]["size_bytes"] < report["before"]["size_bytes"]
    assert set(report["variants"]) == {"onnx_int8", "torch_int8"}
    # The recommended variant is the faster of the two in every timed pass, or, within the noise, the smaller
    # download (and the report says so); the headline numbers are its.
    variants, recommendation = report["variants"], report["recommendation"]
    assert report["primary"] == recommendation["variant"]
    fastest = max(variants, key=lambda n: variants[n]["after"]["throughput_batch32"])
    other = next(n for n in variants if n != fastest)
    if variants[fastest]["after"]["throughput_batch32_min"] > variants[other]["after"]["throughput_batch32_max"]:
        assert report["primary"] == fastest and not recommendation["within_noise"]
    else:
        assert recommendation["within_noise"] and recommendation["message"].startswith("Within the noise")
        assert report["primary"] == min(variants, key=lambda n: variants[n]["after"]["size_bytes"])
    assert report["after"] == report["variants"][report["primary"]]["after"]
    torch_int8 = report["variants"]["torch_int8"]["after"]
    assert torch_int8["parameters"] == report["before"]["parameters"]  # the same weights, one byte each
    assert torch_int8["size_bytes"] < report["before"]["size_bytes"]
    assert report["guard"] == {"max_accuracy_drop_points": 100.0, "accuracy_drop_points": report["guard"]["accuracy_drop_points"],
                               "passed": True}
    downloads = {a["name"] for a in client.get(f"/api/v1/jobs/{job_id}/artifacts").json()}
    for artifact in ("model.zip", "model-onnx-int8.zip"):  # each archive's own card, run as a customer runs it
        folder, members = unzip(b"".join(client.get(f"/api/v1/jobs/{job_id}/artifacts/{artifact}").streaming_content),
                                tmp_path / artifact.removesuffix(".zip"))
        card = (folder / "README.md").read_text()
        check_named_files(card, members, downloads)
        (code,) = code_blocks(card)
        assert ("import torch" in code) == (artifact == "model.zip")  # the ONNX one needs no PyTorch
        assert run_card(code, folder)["label"] in job.labels

def test_unmeetable_guard_fails_the_job_with_the_reason(tmp_path, fast_jobs, tenant_a, api_for, dataset, tiny_bert):
    """Straight through the runner (no broker needed): the guard's verdict
    becomes the job's state and reason."""
    from jobs import lifecycle, submission

    client = api_for(tenant_a.key(scopes=["write"]))
    with celery_worker(tmp_path / "worker.log", extra_env=worker_env(fast_jobs, tmp_path)) as (queue, _process):
        fast_jobs.LATHE_DEFAULT_QUEUE = queue
        source_id = submit(client, dataset, epochs=1)
        wait_for(lambda: job_state(source_id).state == JobState.SUCCEEDED, timeout=180, message="the fine-tune")
    job, _ = submission.compression_submit(organization=tenant_a.organization, actor=_actor(tenant_a),
                                         kind="quantize", source_job_id=source_id, max_accuracy_drop=0)
    Job.objects.filter(pk=job.pk).update(max_accuracy_drop=-50)  # demands 50 points of improvement
    claimed, token = lifecycle.job_claim(job_id=job.pk, worker="test", device_class="cpu")
    assert runner.run_claimed_job(claimed, token) == JobState.FAILED
    job.refresh_from_db()
    assert job.state == JobState.FAILED and job.failure_reason.startswith("Accuracy guard failed: accuracy dropped")
    assert "more than the -50.0 allowed" in job.failure_reason
    assert job.result["compression"]["guard"]["passed"] is False


def _actor(tenant):
    from tenancy.actors import Actor

    return Actor.for_membership(tenant.owner_membership)
