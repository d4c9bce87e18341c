"""The comparison's surface: POST /api/v1/jobs kind evaluate (a hostile-input table: a 4xx naming the field,
nothing written), the leaderboard priced at the plan's rate (GET .../leaderboard, .../leaderboard.csv), the
dashboard's table and chart, and the one-click 'Compare all my variants'."""
from __future__ import annotations

import csv
import io
import json
import math
import xml.etree.ElementTree as ET

import pytest
from django.test import Client

from jobs import kind_runners
from jobs.models import Job, JobKind, JobState
from tenancy.entitlements import entitlements_for

from .predict_helpers import archive, stored_artifact

pytestmark = pytest.mark.django_db


def model_job(tenant, version, *, kind=JobKind.FINETUNE, source=None, name="", labels=None, artifacts=("model.zip",)):
    job = Job.objects.create(organization=tenant.organization, kind=kind, state=JobState.SUCCEEDED,
                             dataset_version=version, source_job=source, name=name,
                             labels=labels if labels is not None else sorted(version.report["labels"]["counts"]))
    for artifact in artifacts:
        stored_artifact(job, artifact, archive({"config.json": b"{}"}))
    return job


@pytest.fixture
def family(tenant_a, dataset):
    """A fine-tune, its int8 quantization (PyTorch and ONNX archives) and a prune of the fine-tune."""
    version = dataset.latest_version
    finetune = model_job(tenant_a, version, name="intents")
    quantized = model_job(tenant_a, version, kind=JobKind.QUANTIZE, source=finetune, name="int8 of intents",
                          artifacts=("model.zip", "model-onnx-int8.zip"))
    pruned = model_job(tenant_a, version, kind=JobKind.PRUNE, source=finetune, name="=HYPERLINK(\"x\") prune")
    return finetune, quantized, pruned


def body(dataset, models, **extra):
    return {"kind": "evaluate", "models": models, "dataset_id": dataset.pk, **extra}


def test_a_comparison_is_queued_with_its_models_and_options(tenant_a, api_for, dataset, family):
    finetune, quantized, pruned = family
    client = api_for(tenant_a.key(scopes=["write"]))
    models = [{"job_id": finetune.pk}, {"job_id": quantized.pk, "artifact": "model-onnx-int8.zip"}, {"job_id": pruned.pk}]
    response = client.post("/api/v1/jobs", body(dataset, models, accuracy_tolerance=2.5, latency_samples=10),
                           format="json")
    assert response.status_code == 201, response.content
    job = Job.objects.get(pk=response.json()["id"])
    assert job.kind == JobKind.EVALUATE and job.state == JobState.QUEUED and job.dataset_version == dataset.latest_version
    assert [m["key"] for m in job.spec["models"]] == [f"job-{finetune.pk}/model.zip",
                                                     f"job-{quantized.pk}/model-onnx-int8.zip", f"job-{pruned.pk}/model.zip"]
    assert job.spec["accuracy_tolerance"] == 2.5 and job.spec["latency_samples"] == 10 and job.spec["max_new_tokens"] == 64
    assert job.labels == sorted(dataset.latest_version.report["labels"]["counts"])
    assert response.json()["method"] == "evaluate"
    quote = client.post("/api/v1/jobs/quote", body(dataset, models), format="json")
    assert quote.status_code == 200 and quote.json()["estimated_seconds"] > 0, quote.content


def other_tenant_job(tenant_b, media):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from corpora.services import dataset_upload
    from tenancy.actors import Actor
    from tests.jobs.conftest import slice_csv

    version = dataset_upload(organization=tenant_b.organization, actor=Actor.for_membership(tenant_b.owner_membership),
                             uploaded=SimpleUploadedFile("b.csv", slice_csv()), validation_fraction=0.2)
    return model_job(tenant_b, version)


HOSTILE = [
    ("models not a list", lambda f, d: {"models": {"job_id": f[0].pk}}, "models"),
    ("models a string", lambda f, d: {"models": "job-1"}, "models"),
    ("one model", lambda f, d: {"models": [{"job_id": f[0].pk}]}, "models"),
    ("eleven models", lambda f, d: {"models": [{"job_id": f[0].pk}] * 11}, "models"),
    ("no models", lambda f, d: {"models": []}, "models"),
    ("duplicates", lambda f, d: {"models": [{"job_id": f[0].pk}, {"job_id": f[0].pk, "artifact": "model.zip"}]}, "models"),
    ("reference not an object", lambda f, d: {"models": [f[0].pk, f[1].pk]}, "models[0]"),
    ("unknown reference key", lambda f, d: {"models": [{"job_id": f[0].pk}, {"job": f[1].pk}]}, "models[1]"),
    ("boolean id", lambda f, d: {"models": [{"job_id": True}, {"job_id": f[1].pk}]}, "models[0]"),
    ("huge id", lambda f, d: {"models": [{"job_id": 10 ** 400}, {"job_id": f[1].pk}]}, "models[0].job_id"),
    ("1e400 id", lambda f, d: {"models": [{"job_id": 1e400}, {"job_id": f[1].pk}]}, "models[0].job_id"),
    ("zero id", lambda f, d: {"models": [{"job_id": 0}, {"job_id": f[1].pk}]}, "models[0]"),
    ("NUL in artifact", lambda f, d: {"models": [{"job_id": f[0].pk}, {"job_id": f[1].pk, "artifact": "model\x00.zip"}]},
     "models[1].artifact"),
    ("both ids", lambda f, d: {"models": [{"job_id": f[0].pk, "uploaded_model_id": 1}, {"job_id": f[1].pk}]}, "models[0]"),
    ("not a model archive", lambda f, d: {"models": [{"job_id": f[0].pk}, {"job_id": f[1].pk, "artifact": "x.zip"}]}, None),
    ("deep JSON", lambda f, d: {"models": [{"job_id": f[0].pk}, {"job_id": json.loads("[" * 200 + "]" * 200)}]},
     "parse_error"),
    ("1e400 tolerance", lambda f, d: {"accuracy_tolerance": 1e400}, "accuracy_tolerance"),
    ("negative tolerance", lambda f, d: {"accuracy_tolerance": -1}, "accuracy_tolerance"),
    ("string tolerance", lambda f, d: {"accuracy_tolerance": "lots"}, "accuracy_tolerance"),
    ("latency_samples float", lambda f, d: {"latency_samples": 7.5}, "latency_samples"),
    ("latency_samples huge", lambda f, d: {"latency_samples": 10 ** 30}, "latency_samples"),
    ("no dataset", lambda f, d: {"dataset_id": None}, "dataset_id"),
    ("unknown dataset", lambda f, d: {"dataset_id": 987654}, "dataset_id"),
    ("dataset a string", lambda f, d: {"dataset_id": "one"}, "dataset_id"),
    ("NUL in name", lambda f, d: {"name": "a\x00b"}, "name"),
    ("unknown field", lambda f, d: {"temperature": 2}, "temperature"),
    ("a compression field", lambda f, d: {"source_job_id": f[0].pk}, "source_job_id"),
    ("a fine-tune field", lambda f, d: {"base_model": "tiny-bert"}, "base_model"),
]


@pytest.mark.parametrize("case, change, field", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_hostile_comparisons_name_the_field_and_write_nothing(tenant_a, api_for, dataset, family, case, change, field):
    client = api_for(tenant_a.key(scopes=["write"]))
    payload = body(dataset, [{"job_id": family[0].pk}, {"job_id": family[1].pk}])
    payload.update(change(family, dataset))
    before = Job.objects.count()
    raw = json.dumps(payload, allow_nan=True).replace("Infinity", "1e400")  # the literal as a client would send it
    response = client.post("/api/v1/jobs", data=raw, content_type="application/json")
    assert 400 <= response.status_code < 500, (case, response.status_code, response.content)
    if field == "parse_error":  # refused by the JSON parser (core.parsers), before any field is read
        assert response.status_code == 400 and response.json()["error"]["code"] == "parse_error"
    elif field is not None:
        assert response.status_code == 400, (case, response.content)
        assert field in response.json()["error"]["fields"], (case, response.json())
    else:
        assert response.status_code == 404 and "x.zip" in response.json()["error"]["message"]
    assert Job.objects.count() == before


def test_comparisons_refuse_foreign_mixed_and_mismatched_models(tenant_a, tenant_b, api_for, dataset, family, media):
    from jobs.models import JobKind

    client = api_for(tenant_a.key(scopes=["write"]))
    finetune, quantized, _pruned = family
    version = dataset.latest_version
    before = Job.objects.count()
    foreign = other_tenant_job(tenant_b, media)
    response = client.post("/api/v1/jobs", body(dataset, [{"job_id": finetune.pk}, {"job_id": foreign.pk}]), format="json")
    assert response.status_code == 404, response.content  # another tenant's job is not found, as an unknown one
    chat = model_job(tenant_a, version, kind=JobKind.CHAT_FINETUNE, labels=[])
    response = client.post("/api/v1/jobs", body(dataset, [{"job_id": finetune.pk}, {"job_id": chat.pk}]), format="json")
    assert response.status_code == 400 and "models" in response.json()["error"]["fields"]
    assert "chat" in response.json()["error"]["message"]
    narrow = model_job(tenant_a, version, labels=sorted(version.report["labels"]["counts"])[:2])
    response = client.post("/api/v1/jobs", body(dataset, [{"job_id": finetune.pk}, {"job_id": narrow.pk}]), format="json")
    assert response.status_code == 400 and "models[1]" in response.json()["error"]["fields"], response.content
    running = Job.objects.create(organization=tenant_a.organization, kind=JobKind.FINETUNE, state=JobState.RUNNING,
                                 dataset_version=version, labels=finetune.labels)
    response = client.post("/api/v1/jobs", body(dataset, [{"job_id": finetune.pk}, {"job_id": running.pk}]), format="json")
    assert response.status_code == 400 and "models[1]" in response.json()["error"]["fields"]
    # A comparison's own fields on another kind are refused, never dropped.
    response = client.post("/api/v1/jobs", {"kind": "quantize", "source_job_id": finetune.pk, "models": []}, format="json")
    assert response.status_code == 400 and "models" in response.json()["error"]["fields"]
    assert Job.objects.count() == before + 4  # the four model jobs made here (one of tenant B), no comparison


# --- the leaderboard, priced ----------------------------------------------------------------------------

def measured(key, name, accuracy, throughput, size, variant="fp32"):
    return {"key": key, "name": name, "family": "classifier", "variant": variant, "accuracy": accuracy,
            "macro_f1": accuracy - 0.05, "metric": "accuracy", "latency_ms_p50": 4.0, "latency_ms_p95": 6.5,
            "throughput_batch32": throughput, "throughput_batch32_min": throughput * 0.9,
            "throughput_batch32_max": throughput * 1.1, "throughput_passes": 3, "size_bytes": size, "rows": 40}


@pytest.fixture
def finished_comparison(tenant_a, dataset, family):
    """A comparison job as the worker leaves it, finished by the platform's outcome (the pricing under test)."""
    finetune, quantized, pruned = family
    job = Job.objects.create(organization=tenant_a.organization, kind=JobKind.EVALUATE, state=JobState.RUNNING,
                             dataset_version=dataset.latest_version, device_class="cpu", labels=finetune.labels,
                             spec={"models": [], "accuracy_tolerance": 1.0, "latency_samples": 5, "max_new_tokens": 64})
    report = {"models": [measured(f"job-{finetune.pk}/model.zip", "intents", 0.90, 250.0, 9_000_000),
                         measured(f"job-{quantized.pk}/model.zip", "int8 of intents", 0.895, 600.0, 3_000_000, "torch_int8"),
                         measured(f"job-{pruned.pk}/model.zip", pruned.name, 0.70, 900.0, 5_000_000)],
              "device_class": "cpu", "device_count": 1, "threads": 1, "dataset_rows": 40, "batch_size": 32,
              "latency_samples": 5, "repeats": 3, "accuracy_tolerance": 1.0}
    state, result, reason = kind_runners.evaluate_outcome(job, report)
    assert (state, reason) == (JobState.SUCCEEDED, "")
    Job.objects.filter(pk=job.pk).update(state=state, result=result)
    job.refresh_from_db()
    return job, report


def test_the_leaderboard_is_priced_at_the_plan_rate_and_marks_the_cheapest_good_enough(tenant_a, api_for,
                                                                                      finished_comparison):
    job, report = finished_comparison
    client = api_for(tenant_a.key(scopes=["read"]))
    board = client.get(f"/api/v1/jobs/{job.pk}/leaderboard").json()
    rate = float(entitlements_for(organization=tenant_a.organization).rate_for("cpu"))
    assert rate > 0 and float(board["usd_per_second"]) == pytest.approx(rate)
    assert [r["name"] for r in board["rows"]] == ["intents", "int8 of intents", report["models"][2]["name"]]  # best first
    for row in board["rows"]:
        source = next(m for m in report["models"] if m["key"] == row["key"])
        assert row["cost_per_1m_usd"] == pytest.approx(1e6 / source["throughput_batch32"] * rate, rel=1e-5)
    # int8 is 0.5 points behind (within 1) and cheaper than the fp32; the pruned one is cheaper still but 20 behind.
    assert board["recommended"] == report["models"][1]["key"]
    assert [r["recommended"] for r in board["rows"]] == [False, True, False]
    assert [r["within_tolerance"] for r in board["rows"]] == [True, True, False]


def test_the_leaderboard_csv_is_formula_safe(tenant_a, api_for, finished_comparison):
    job, report = finished_comparison
    client = api_for(tenant_a.key(scopes=["read"]))
    response = client.get(f"/api/v1/jobs/{job.pk}/leaderboard.csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    assert [r["rank"] for r in rows] == ["1", "2", "3"]
    assert rows[2]["name"] == "'" + report["models"][2]["name"]  # "=HYPERLINK(..." neutralised
    assert [r["recommended"] for r in rows] == ["false", "true", "false"]
    assert float(rows[1]["cost_per_1m_usd"]) == pytest.approx(
        1e6 / 600.0 * float(entitlements_for(organization=tenant_a.organization).rate_for("cpu")), rel=1e-5)


def test_leaderboards_of_unfinished_other_kinds_and_foreign_jobs(tenant_a, tenant_b, api_for, dataset, family,
                                                               finished_comparison):
    job, _ = finished_comparison
    client = api_for(tenant_a.key(scopes=["read"]))
    assert client.get(f"/api/v1/jobs/{family[0].pk}/leaderboard").status_code == 404  # a fine-tune has none
    queued = Job.objects.create(organization=tenant_a.organization, kind=JobKind.EVALUATE, dataset_version=job.dataset_version,
                                spec={"models": []})
    response = client.get(f"/api/v1/jobs/{queued.pk}/leaderboard")
    assert response.status_code == 200 and response.json()["rows"] == [] and response.json()["state"] == "queued"
    assert client.get(f"/api/v1/jobs/{queued.pk}/leaderboard.csv").status_code == 409
    other = api_for(tenant_b.key(scopes=["read"]))
    assert other.get(f"/api/v1/jobs/{job.pk}/leaderboard").status_code == 404
    assert other.get(f"/api/v1/jobs/{job.pk}/leaderboard.csv").status_code == 404


def test_the_dashboard_shows_the_table_and_the_chart_with_the_recommended_row(tenant_a, tenant_b, finished_comparison):
    job, report = finished_comparison
    browser = Client()
    browser.force_login(tenant_a.owner)
    page = browser.get(f"/o/{tenant_a.organization.slug}/jobs/{job.pk}").content.decode()
    assert 'data-testid="leaderboard-table"' in page
    assert f'data-key="{report["models"][1]["key"]}" class="recommended" data-recommended="true"' in page
    assert "=HYPERLINK(&quot;x&quot;) prune" in page  # escaped
    assert 'data-testid="compress-form"' not in page and "style=" not in page and "<script>" not in page
    svg = page[page.index("<svg"):page.index("</svg>") + len("</svg>")]
    tree = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    points = tree.findall(f"{ns}g")
    assert len(points) == 3 and [p.get("class") for p in points] == ["point", "point recommended", "point"]
    # Cheaper is further left, more accurate is higher.
    (x1, y1), (x2, y2), (x3, y3) = [(float(p.find(f"{ns}circle").get("cx")), float(p.find(f"{ns}circle").get("cy")))
                                    for p in points]
    assert x3 < x2 < x1 and y1 < y2 < y3 and all(math.isfinite(v) for v in (x1, y1, x2, y2, x3, y3))
    csv_page = browser.get(f"/o/{tenant_a.organization.slug}/jobs/{job.pk}/leaderboard.csv")
    assert csv_page.status_code == 200 and b"".join(csv_page.streaming_content).count(b"\r\n") == 4
    outsider = Client()
    outsider.force_login(tenant_b.owner)
    assert outsider.get(f"/o/{tenant_a.organization.slug}/jobs/{job.pk}").status_code == 404


def test_compare_all_my_variants_in_one_click(tenant_a, tenant_b, dataset, family):
    finetune, quantized, pruned = family
    browser = Client()
    browser.force_login(tenant_a.owner)
    for member in (finetune, quantized):
        page = browser.get(f"/o/{tenant_a.organization.slug}/jobs/{member.pk}").content.decode()
        assert 'data-testid="compare-variants"' in page and "4 variants" in page
    response = browser.post(f"/o/{tenant_a.organization.slug}/jobs/{quantized.pk}/compare")
    comparison = Job.objects.filter(kind=JobKind.EVALUATE).get()
    assert response.status_code == 302 and response["Location"].endswith(f"/jobs/{comparison.pk}")
    assert sorted(m["key"] for m in comparison.spec["models"]) == sorted([
        f"job-{finetune.pk}/model.zip", f"job-{quantized.pk}/model.zip", f"job-{quantized.pk}/model-onnx-int8.zip",
        f"job-{pruned.pk}/model.zip"])
    assert comparison.dataset_version == finetune.dataset_version
    page = browser.get(response["Location"]).content.decode()
    assert 'data-testid="leaderboard"' in page and "The table appears here" in page
    outsider = Client()
    outsider.force_login(tenant_b.owner)
    assert outsider.post(f"/o/{tenant_a.organization.slug}/jobs/{quantized.pk}/compare").status_code == 404
    assert Job.objects.filter(kind=JobKind.EVALUATE).count() == 1


@pytest.mark.parametrize("change, field", [
    ({"models": ["one"]}, "models"),  # not a model of this organization
    ({"accuracy_tolerance": "1e400"}, "accuracy_tolerance"),
    ({"accuracy_tolerance": "-1"}, "accuracy_tolerance"),
    ({"latency_samples": "3"}, "latency_samples"),
    ({"dataset_id": "987654"}, "dataset_id"),
    ({"name": "x" * 101}, "name"),
])
def test_the_compare_form_refuses_bad_input_on_its_field(tenant_a, dataset, family, change, field):
    finetune, quantized, _pruned = family
    browser = Client()
    browser.force_login(tenant_a.owner)
    data = {"models": [f"job-{finetune.pk}/model.zip", f"job-{quantized.pk}/model.zip"], "dataset_id": dataset.pk, **change}
    response = browser.post(f"/o/{tenant_a.organization.slug}/compare", data)
    assert response.status_code == 400
    assert f'data-field="{field}"' in response.content.decode()
    assert not Job.objects.filter(kind=JobKind.EVALUATE).exists()


def test_the_compare_form_queues_the_models_picked(tenant_a, tenant_b, dataset, family, media):
    finetune, quantized, pruned = family
    foreign = other_tenant_job(tenant_b, media)
    browser = Client()
    browser.force_login(tenant_a.owner)
    page = browser.get(f"/o/{tenant_a.organization.slug}/compare").content.decode()
    assert f'value="job-{quantized.pk}/model-onnx-int8.zip"' in page and f"job-{foreign.pk}/" not in page
    one = browser.post(f"/o/{tenant_a.organization.slug}/compare", {"models": [f"job-{finetune.pk}/model.zip"],
                                                                     "dataset_id": dataset.pk})
    assert one.status_code == 400 and "2 to 10" in one.content.decode()  # the service's refusal, on the form
    response = browser.post(f"/o/{tenant_a.organization.slug}/compare", {
        "models": [f"job-{pruned.pk}/model.zip", f"job-{quantized.pk}/model-onnx-int8.zip"], "dataset_id": dataset.pk,
        "accuracy_tolerance": "0.5"})
    comparison = Job.objects.get(kind=JobKind.EVALUATE)
    assert response.status_code == 302 and response["Location"].endswith(f"/jobs/{comparison.pk}")
    assert [m["key"] for m in comparison.spec["models"]] == [f"job-{pruned.pk}/model.zip",  # in the order picked
                                                            f"job-{quantized.pk}/model-onnx-int8.zip"]
    assert comparison.spec["accuracy_tolerance"] == 0.5


@pytest.mark.parametrize("costs, values", [([0.0, 0.0], [1.0, 1.0]), ([0.5, 2.0], [0.0, 0.0]), ([1e-9, 3e6], [0.33, 0.99])])
def test_the_chart_stays_inside_its_box_at_the_edges(costs, values):
    from jobs.leaderboard import HEIGHT, WIDTH, scatter

    board = {"metric": "accuracy", "rows": [{"rank": i + 1, "name": f"m{i}", "accuracy": v, "cost_per_1m_usd": c,
                                             "recommended": i == 0} for i, (c, v) in enumerate(zip(costs, values))]}
    chart = scatter(board)
    for p in chart["points"]:
        assert 0 <= p["x"] <= WIDTH and 0 <= p["y"] <= HEIGHT and math.isfinite(p["x"]) and math.isfinite(p["y"])
    assert scatter({"metric": "accuracy", "rows": [{"rank": 1, "name": "x", "accuracy": 1, "cost_per_1m_usd": None}]}) is None


# --- scored on the rows a fine-tune held out (held_out_of_job_id) --------------------------------------------

def held_out_family(tenant, version, **test_set):
    """A fine-tune submitted with a test set (test_fraction, or test_dataset_version) and its int8 quantization."""
    finetune = model_job(tenant, version, name="held out")
    Job.objects.filter(pk=finetune.pk).update(**test_set)
    finetune.refresh_from_db()
    quantized = model_job(tenant, version, kind=JobKind.QUANTIZE, source=finetune, name="int8 of held out")
    return finetune, quantized


def test_a_comparison_on_the_rows_a_fine_tune_held_out(tenant_a, api_for, dataset):
    version = dataset.latest_version
    finetune, quantized = held_out_family(tenant_a, version, test_fraction=0.25)
    client = api_for(tenant_a.key(scopes=["write"]))
    models = [{"job_id": finetune.pk}, {"job_id": quantized.pk}]
    whole = client.post("/api/v1/jobs/quote", body(dataset, models), format="json").json()
    payload = {"kind": "evaluate", "models": models, "held_out_of_job_id": finetune.pk}
    held = client.post("/api/v1/jobs/quote", payload, format="json")
    assert held.status_code == 200, held.content
    # A quarter of the train split instead of every row: the quote's work shrinks with it.
    assert 0 < held.json()["tokens"] < whole["tokens"]
    response = client.post("/api/v1/jobs", payload, format="json")
    assert response.status_code == 201, response.content
    job = Job.objects.get(pk=response.json()["id"])
    assert job.kind == JobKind.EVALUATE and job.source_job == finetune and job.dataset_version == version
    assert response.json()["source_job"] == finetune.pk
    assert f"the 25% test split job {finetune.pk} carved" in job.events.get().message
    board = client.get(f"/api/v1/jobs/{job.pk}/leaderboard").json()
    assert board["held_out_of_job_id"] == finetune.pk and f"job {finetune.pk} carved" in board["scored_on"]


def test_held_out_comparisons_refuse_what_holds_nothing_out(tenant_a, tenant_b, api_for, dataset, family, media):
    version = dataset.latest_version
    finetune, quantized = held_out_family(tenant_a, version, test_fraction=0.25)
    foreign, _ = held_out_family(tenant_b, other_tenant_job(tenant_b, media).dataset_version, test_fraction=0.25)
    client = api_for(tenant_a.key(scopes=["write"]))
    models = [{"job_id": finetune.pk}, {"job_id": quantized.pk}]
    cases = [
        ({"held_out_of_job_id": family[0].pk}, "held no rows out"),  # a fine-tune without a test set
        ({"held_out_of_job_id": quantized.pk}, "held no rows out"),  # not a fine-tune
        ({"held_out_of_job_id": foreign.pk}, "No such job"),  # another tenant's: as unknown
        ({"held_out_of_job_id": 987654}, "No such job"),
        ({"held_out_of_job_id": finetune.pk, "dataset_id": dataset.pk}, "not both"),
        ({"held_out_of_job_id": "one"}, None),
        ({"held_out_of_job_id": True}, None),
        ({"held_out_of_job_id": 1e400}, None),
        ({"held_out_of_job_id": None}, None),
    ]
    before = Job.objects.count()
    for change, words in cases:
        raw = json.dumps({"kind": "evaluate", "models": models, **change}).replace("Infinity", "1e400")
        response = client.post("/api/v1/jobs", data=raw, content_type="application/json")
        assert response.status_code == 400, (change, response.content)
        error = response.json()["error"]
        assert "held_out_of_job_id" in error["fields"] or "dataset_id" in error["fields"], (change, error)
        assert words is None or words in error["message"], (change, error)
    # The field belongs to comparisons: on another kind it is refused by name.
    response = client.post("/api/v1/jobs", {"kind": "quantize", "source_job_id": finetune.pk,
                                            "held_out_of_job_id": finetune.pk}, format="json")
    assert response.status_code == 400 and "held_out_of_job_id" in response.json()["error"]["fields"]
    assert Job.objects.count() == before


def test_one_click_compares_on_the_held_out_rows_and_warns_without_them(tenant_a, dataset, family):
    version = dataset.latest_version
    finetune, quantized = held_out_family(tenant_a, version, test_fraction=0.25)
    browser = Client()
    browser.force_login(tenant_a.owner)
    slug = tenant_a.organization.slug
    page = browser.get(f"/o/{slug}/jobs/{quantized.pk}").content.decode()
    assert f"the 25% test split job {finetune.pk} carved" in page and 'data-testid="compare-on-training-data"' not in page
    response = browser.post(f"/o/{slug}/jobs/{quantized.pk}/compare")
    comparison = Job.objects.get(kind=JobKind.EVALUATE)
    assert response.status_code == 302 and comparison.source_job == finetune
    page = browser.get(response["Location"]).content.decode()
    assert f"job {finetune.pk} carved" in page
    # A family whose fine-tune held nothing out is compared on its training data, and the page says what that means.
    page = browser.get(f"/o/{slug}/jobs/{family[0].pk}").content.decode()
    assert 'data-testid="compare-on-training-data"' in page and "flatters them" in page


def test_the_compare_form_offers_the_held_out_rows_of_fine_tunes(tenant_a, dataset, family):
    version = dataset.latest_version
    finetune, quantized = held_out_family(tenant_a, version, test_fraction=0.25)
    browser = Client()
    browser.force_login(tenant_a.owner)
    slug = tenant_a.organization.slug
    page = browser.get(f"/o/{slug}/compare").content.decode()
    assert f'value="held-out-of-{finetune.pk}"' in page and f'value="held-out-of-{family[0].pk}"' not in page
    response = browser.post(f"/o/{slug}/compare", {"models": [f"job-{finetune.pk}/model.zip", f"job-{quantized.pk}/model.zip"],
                                                    "dataset_id": f"held-out-of-{finetune.pk}"})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Job.objects.get(kind=JobKind.EVALUATE).source_job == finetune
    refused = browser.post(f"/o/{slug}/compare", {"models": [f"job-{finetune.pk}/model.zip", f"job-{quantized.pk}/model.zip"],
                                                   "dataset_id": f"held-out-of-{family[0].pk}"})
    assert refused.status_code == 400 and 'data-field="dataset_id"' in refused.content.decode()
