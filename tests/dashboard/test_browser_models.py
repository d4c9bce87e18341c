"""Real browser (headless Debian `chromium`), the models' side of a newcomer's walk (issue 18): type a sentence
into a fine-tune's Try-it box and read the answer a real inference worker gave (labels with probabilities,
checked against the model run directly here, cold then warm); open a finished comparison and see its table and
cost-vs-accuracy chart drawn, the cheapest good-enough model marked; and start "Compare all my variants" with
one click. The training and compression jobs that make such models run with real workers in
tests/serving/test_evaluate_e2e.py; here they are stored as those jobs leave them."""
from __future__ import annotations

import pytest
import torch
from django.conf import settings as django_settings
from django.db import connections
from django.test import Client

from jobs import kind_runners
from jobs.models import Job, JobKind, JobState
from tenancy.entitlements import entitlements_for
from tests.model_archives import DEFAULT_LABELS, tiny_classifier_folder, zip_bytes
from tests.serving.helpers import inference_worker, store_model, succeeded_job

from .test_browser import RECORD_VIOLATIONS, page  # noqa: F401  (the chromium fixture)

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

LABELS = list(DEFAULT_LABELS)  # the dataset fixture's labels: a comparison needs models that know them


def direct_probabilities(folder, text: str) -> dict[str, float]:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.inference_mode():
        logits = model(**tokenizer([text], truncation=True, max_length=128, return_tensors="pt")).logits.float()
    return dict(zip(LABELS, torch.softmax(logits, -1)[0].tolist()))


def logged_in(page, live_server, user) -> None:  # noqa: F811
    client = Client()
    client.force_login(user)
    page.context.add_cookies([{"name": django_settings.SESSION_COOKIE_NAME,
                               "value": client.cookies[django_settings.SESSION_COOKIE_NAME].value,
                               "url": live_server.url}])


def measured(job, name, accuracy, throughput, size, variant="fp32", artifact="model.zip"):
    return {"key": f"job-{job.pk}/{artifact}", "name": name, "family": "classifier", "variant": variant,
            "accuracy": accuracy, "macro_f1": accuracy - 0.02, "metric": "accuracy", "latency_ms_p50": 4.0,
            "latency_ms_p95": 6.0, "throughput_batch32": throughput, "throughput_batch32_min": throughput * 0.9,
            "throughput_batch32_max": throughput * 1.1, "throughput_passes": 3, "size_bytes": size, "rows": 40}


def test_try_a_sentence_and_read_the_comparison_in_a_browser(page, live_server, settings, tmp_path,  # noqa: F811
                                                            tenant_a, dataset, media):
    version = dataset.latest_version
    folder = tiny_classifier_folder(tmp_path / "intents", labels=LABELS, layers=1)
    finetune = succeeded_job(tenant_a, version, name="intents", labels=LABELS)
    store_model(finetune, zip_bytes(folder))
    quantized = succeeded_job(tenant_a, version, kind=JobKind.QUANTIZE, name="intents int8", labels=LABELS,
                              source=finetune)
    store_model(quantized, zip_bytes(folder), name="model-onnx-int8.zip")
    distilled = succeeded_job(tenant_a, version, kind=JobKind.DISTILL, name="intents distilled", labels=LABELS,
                              source=finetune)
    store_model(distilled, zip_bytes(folder))
    # A comparison as the evaluate worker leaves it, finished by the platform's own outcome (pricing, the mark).
    comparison = Job.objects.create(organization=tenant_a.organization, kind=JobKind.EVALUATE, state=JobState.RUNNING,
                                    dataset_version=version, device_class="cpu", labels=LABELS, name="variants",
                                    spec={"models": [], "accuracy_tolerance": 1.0, "latency_samples": 5})
    report = {"models": [measured(finetune, "intents", 0.92, 300.0, 90_000_000),
                         measured(quantized, "intents int8", 0.915, 900.0, 23_000_000, "onnx_int8",
                                  "model-onnx-int8.zip"),
                         measured(distilled, "intents distilled", 0.85, 1500.0, 40_000_000)],
              "device_class": "cpu", "device_count": 1, "threads": 1, "dataset_rows": 40, "batch_size": 32,
              "latency_samples": 5, "repeats": 3, "accuracy_tolerance": 1.0}
    state, result, reason = kind_runners.evaluate_outcome(comparison, report)
    assert (state, reason) == (JobState.SUCCEEDED, "")
    Job.objects.filter(pk=comparison.pk).update(state=state, result=result)

    logged_in(page, live_server, tenant_a.owner)
    violations_seen = []
    page.add_init_script(RECORD_VIOLATIONS)
    slug = tenant_a.organization.slug
    text = "my card has not arrived yet"
    expected = direct_probabilities(folder, text)
    best = max(expected, key=expected.get)
    with inference_worker(settings, tmp_path):
        for warm in (False, True):
            page.goto(f"{live_server.url}/o/{slug}/jobs/{finetune.pk}")
            page.fill("[data-testid=try-it-form] textarea[name=text]", text)
            page.click("[data-testid=try-it-form] button")
            page.locator("[data-testid=try-it-result]").wait_for()
            answer = page.locator("[data-testid=try-it-result]").inner_text()
            assert f"Label: {best} ({100 * expected[best]:.1f} %)" in answer, answer
            for label, probability in expected.items():
                assert f"{label}\t{100 * probability:.1f} %" in answer, answer
            assert ("model already loaded" in answer) is warm, answer
            violations_seen += page.evaluate("window.__cspViolations")

    # The comparison: the table best first, the cheapest within a point of the best marked, the chart drawn.
    response = page.goto(f"{live_server.url}/o/{slug}/jobs/{comparison.pk}")
    assert response.status == 200
    rows = page.locator("[data-testid=leaderboard-table] tbody tr")
    assert rows.count() == 3
    assert [rows.nth(i).get_attribute("data-key") for i in range(3)] == [m["key"] for m in report["models"]]
    assert page.locator("[data-testid=leaderboard-table] tr[data-recommended=true]").get_attribute("data-key") \
        == report["models"][1]["key"]
    rate = float(entitlements_for(organization=tenant_a.organization).rate_for("cpu"))
    for i, model in enumerate(report["models"]):  # cost per 1M predictions at the plan's rate, as shown
        assert f"${1e6 / model['throughput_batch32'] * rate:.4f}" in rows.nth(i).inner_text()
    chart = page.locator("[data-testid=leaderboard-chart]")
    box = chart.bounding_box()
    assert box and box["width"] > 300 and box["height"] > 150
    points = page.locator("[data-testid=leaderboard-chart] g.point circle")
    assert points.count() == 3
    for i in range(3):  # every point inside the drawn chart
        point = points.nth(i).bounding_box()
        assert point and box["x"] <= point["x"] <= box["x"] + box["width"] and box["y"] <= point["y"] <= box["y"] + box["height"]
    assert page.locator("[data-testid=leaderboard-chart] g.point.recommended").count() == 1
    violations_seen += page.evaluate("window.__cspViolations")

    # One click from the fine-tune's page queues a comparison of all four archives of the family.
    page.goto(f"{live_server.url}/o/{slug}/jobs/{finetune.pk}")
    page.click("[data-testid=compare-variants] button")
    page.locator("[data-testid=leaderboard]").wait_for()
    connections.close_all()
    queued = Job.objects.filter(kind=JobKind.EVALUATE).exclude(pk=comparison.pk).get()
    assert page.url.endswith(f"/jobs/{queued.pk}") and queued.state == JobState.QUEUED
    assert sorted(m["key"] for m in queued.spec["models"]) == sorted(
        [f"job-{finetune.pk}/model.zip", f"job-{quantized.pk}/model-onnx-int8.zip", f"job-{distilled.pk}/model.zip"])
    assert violations_seen == []
