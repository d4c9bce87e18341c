"""The jobs list and job pages: the kind filter (every kind; an unknown one is
a 400 naming it), compression jobs' names and methods, the compress form's
per-kind options, no training chart for jobs that do not train, and the
under-training hint."""
from __future__ import annotations

import re

import pytest
from django.db import connections

from jobs import selectors, submission
from jobs.models import Job, JobArtifact, JobKind, JobMetric, JobState
from tenancy.actors import Actor
from tests.dashboard.chart_data import chart_data
from tests.dashboard.chart_pages import compression_report

pytestmark = pytest.mark.django_db


def actor(tenant) -> Actor:
    return Actor.for_membership(tenant.owner_membership)


def succeeded_finetune(tenant, dataset, *, name: str = "", method: str = "full", history=(), **hyperparameters) -> Job:
    """A fine-tune submitted through the service, then finished the way the
    runner finishes one: state, result (per-epoch history) and its model.zip."""
    job, _ = submission.job_submit(organization=tenant.organization, actor=actor(tenant), dataset_id=dataset.pk,
                                 base_model="tiny-bert", method=method, name=name, hyperparameters_in=hyperparameters)
    result = {"history": [{"epoch": i + 1, "step": 10 * (i + 1), "accuracy": a, "macro_f1": a} for i, a in enumerate(history)]}
    Job.objects.filter(pk=job.pk).update(state=JobState.SUCCEEDED, result=result)
    JobArtifact.objects.create(job=job, organization=tenant.organization, name="model.zip", kind="model",
                               storage_name="unused.zip", size_bytes=1, sha256="0" * 64)
    job.refresh_from_db()
    return job


def compress(tenant, source: Job, kind: str, **options) -> Job:
    job, _ = submission.compression_submit(organization=tenant.organization, actor=actor(tenant), kind=kind,
                                         source_job_id=source.pk, **options)
    return job


def kind_select(page: str) -> str:
    return re.search(r'<select name="kind".*?</select>', page, re.S).group(0)


def test_kind_filter_offers_every_kind_and_refuses_an_unknown_one(client, api_for, tenant_a, dataset, tiny_bert):
    source = succeeded_finetune(tenant_a, dataset, name="sentiment")
    quantized = compress(tenant_a, source, "quantize")
    client.force_login(tenant_a.owner)
    page = client.get("/o/acme/jobs").content.decode()
    assert re.findall(r'<option value="(\w+)"', kind_select(page)) == ["finetune", "quantize", "prune", "distill", "chat_finetune",
                                                                     "predict", "evaluate"]
    filtered = client.get("/o/acme/jobs?kind=quantize").content.decode()
    assert 'selected>Quantize' in kind_select(filtered)
    assert re.findall(r'href="/o/acme/jobs/(\d+)"', filtered) == [str(quantized.pk)]

    api = api_for(tenant_a.key(scopes=["read"]))
    assert [j["id"] for j in api.get("/api/v1/jobs?kind=quantize").json()["results"]] == [quantized.pk]
    refused = api.get("/api/v1/jobs?kind=quantise")
    assert refused.status_code == 400
    assert refused.json()["error"]["fields"] == {
        "kind": ['"quantise" is not a kind: kind must be one of finetune, quantize, prune, distill, chat_finetune, '
                 'predict, evaluate.']}
    with pytest.raises(Exception, match="kind must be one of"):  # every caller of the selector, not just the API
        selectors.job_list(organization=tenant_a.organization, kind="quantise")

    # The page says so next to the filters and lists the jobs without that filter (the others still apply).
    bad = client.get("/o/acme/jobs?kind=quantise&state=succeeded")
    text = bad.content.decode()
    assert bad.status_code == 400
    errors = re.search(r'data-testid="filter-errors".*?</div>', text, re.S).group(0)
    assert 'data-field="kind"' in errors and ("kind must be one of finetune, quantize, prune, distill, chat_finetune, "
                                              "predict, evaluate.") in errors
    assert re.findall(r'href="/o/acme/jobs/(\d+)"', text) == [str(source.pk)]
    # A date the page cannot read is the same inline message, not a server error.
    dated = client.get("/o/acme/jobs?created_after=last-week")
    assert dated.status_code == 400 and 'data-field="created_after"' in dated.content.decode()


def test_compression_jobs_get_a_readable_default_name_or_the_one_given(client, api_for, tenant_a, dataset, tiny_bert):
    source = succeeded_finetune(tenant_a, dataset, name="sentiment")
    unnamed = succeeded_finetune(tenant_a, dataset)
    api = api_for(tenant_a.key(scopes=["write"]))
    response = api.post("/api/v1/jobs", {"kind": "quantize", "source_job_id": source.pk}, format="json")
    assert response.status_code == 201 and response.json()["name"] == "int8 of sentiment"
    named = api.post("/api/v1/jobs", {"kind": "quantize", "source_job_id": source.pk, "name": "  edge build "}, format="json")
    assert named.json()["name"] == "edge build"
    assert compress(tenant_a, unnamed, "quantize").name == f"int8 of job {unnamed.pk}"

    # The compress form takes a name too; without one the default names the method. The fields of
    # other kinds (all posted when the page runs without JS) are ignored.
    client.force_login(tenant_a.owner)
    page = client.get(f"/o/acme/jobs/{source.pk}").content.decode()
    form = re.search(r'data-testid="compress-form".*?</form>', page, re.S).group(0)
    assert re.search(r'<input[^>]* name="name"', form)
    common = {"max_accuracy_drop": "2", "sparsity": "0.3", "recovery_epochs": "0", "temperature": "3", "student_layers": ""}
    client.post(f"/o/acme/jobs/{source.pk}/compress", {"kind": "prune", "prune_method": "neurons", "name": "", **common})
    client.post(f"/o/acme/jobs/{source.pk}/compress", {"kind": "quantize", "prune_method": "heads", "name": "mine", **common})
    pruned, mine = list(Job.objects.filter(kind__in=["prune", "quantize"]).order_by("-id")[:2])[::-1]
    assert (pruned.kind, pruned.name, pruned.spec["prune_method"]) == ("prune", "neurons prune of sentiment", "neurons")
    assert (mine.kind, mine.name) == ("quantize", "mine") and "temperature" not in mine.spec
    listed = client.get("/o/acme/jobs").content.decode()
    names = re.findall(r'<td data-col="name">([^<]*)</td>', listed)
    assert {"int8 of sentiment", "edge build", f"int8 of job {unnamed.pk}", "neurons prune of sentiment", "mine"} <= set(names)


def test_method_is_the_kinds_own_in_the_api_and_its_schema(client, api_for, tenant_a, dataset, tiny_bert):
    source = succeeded_finetune(tenant_a, dataset, method="lora")
    jobs = {"quantize": compress(tenant_a, source, "quantize"),
            "prune": compress(tenant_a, source, "prune", prune_method="neurons", options={"sparsity": 0.3}),
            "distill": compress(tenant_a, source, "distill")}
    api = api_for(tenant_a.key(scopes=["read"]))
    methods = {j["kind"]: j["method"] for j in api.get("/api/v1/jobs").json()["results"]}
    assert methods == {"finetune": "lora", "quantize": "int8", "prune": "neurons", "distill": "distill"}
    client.force_login(tenant_a.owner)
    listed = client.get("/o/acme/jobs").content.decode()
    assert re.findall(r'<span data-col="method">([^<]*)</span>', listed) == ["distill", "prune (neurons)", "int8", "lora"]
    assert "Prune (neurons) of" in client.get(f"/o/acme/jobs/{jobs['prune'].pk}").content.decode()

    schema = client.get("/api/v1/schema?format=json").json()["components"]["schemas"]
    method = schema["Job"]["properties"]["method"]
    enum = schema[method["allOf"][0]["$ref"].rsplit("/", 1)[1]]["enum"]
    assert enum == ["full", "lora", "int8", "magnitude", "heads", "neurons", "layers", "distill", "predict", "generate",
                    "evaluate"]
    assert "quantize int8" in method["description"] and "prune_method" in method["description"]


def test_jobs_without_training_steps_show_their_report_not_a_chart(client, tenant_a, dataset, tiny_bert):
    source = succeeded_finetune(tenant_a, dataset, name="sentiment")
    quantized = compress(tenant_a, source, "quantize")
    # What the worker writes for int8: one closing measurement row (workers/compression/run.py), then the report.
    JobMetric.objects.create(job=quantized, step=3, epoch=1.0, values={"accuracy": 0.9, "macro_f1": 0.89, "accuracy_before": 0.91})
    Job.objects.filter(pk=quantized.pk).update(state=JobState.RUNNING, step=2, total_steps=3)
    client.force_login(tenant_a.owner)
    running = client.get(f"/o/acme/jobs/{quantized.pk}").content.decode()
    assert 'data-testid="job-chart"' not in running and "Loss and accuracy" not in running
    assert 'data-testid="no-training"' in running and "the compression report appears here" in running
    Job.objects.filter(pk=quantized.pk).update(state=JobState.SUCCEEDED, result={"compression": {**compression_report(), "kind": "quantize"}})
    # The last refresh of the live part brings the report in (it is part of what htmx swaps).
    done = client.get(f"/o/acme/jobs/{quantized.pk}", HTTP_HX_REQUEST="true").content.decode()
    assert 'data-testid="compression-report"' in done and 'data-testid="compression-chart"' in done
    assert 'data-testid="job-chart"' not in done and 'data-testid="no-training"' not in done

    # A distillation trains: its chart draws the training, not the closing measurement.
    distilled = compress(tenant_a, source, "distill")
    for step, loss in ((2, 1.2), (4, 0.9)):
        JobMetric.objects.create(job=distilled, step=step, epoch=step / 4, values={"train_loss": loss})
    JobMetric.objects.create(job=distilled, step=4, epoch=1.0, values={"eval_loss": 0.8, "accuracy": 0.7, "macro_f1": 0.6})
    JobMetric.objects.create(job=distilled, step=3, epoch=1.0, values={"accuracy": 0.7, "macro_f1": 0.6, "accuracy_before": 0.9})
    page = client.get(f"/o/acme/jobs/{distilled.pk}").content.decode()
    chart = chart_data(page, "job-chart-data")
    assert chart["epochs"] == [{"epoch": 1, "step": 4}]
    assert {s["key"]: s["points"] for s in chart["series"]}["accuracy"] == [[4, 0.7]]


def test_a_run_still_improving_at_its_last_epoch_is_called_under_trained(client, api_for, tenant_a, dataset, tiny_bert):
    lora = succeeded_finetune(tenant_a, dataset, method="lora", history=(0.35, 0.6, 0.82))
    full = succeeded_finetune(tenant_a, dataset, history=(0.5, 0.7, 0.78), epochs=3)
    plateau = succeeded_finetune(tenant_a, dataset, history=(0.80, 0.85, 0.86))  # +1.0 point: not "clearly"
    peaked = succeeded_finetune(tenant_a, dataset, history=(0.6, 0.9, 0.88))
    api = api_for(tenant_a.key(scopes=["read"]))
    hints = {j["id"]: j["hints"] for j in api.get("/api/v1/jobs").json()["results"]}
    assert hints[plateau.pk] == hints[peaked.pk] == []
    (hint,) = hints[lora.pk]
    assert hint["code"] == "under_trained" and "0.35 at epoch 1 → 0.82 at epoch 3" in hint["message"]
    epochs, rate = hint["suggestions"]
    assert epochs.startswith(f"more epochs (it ran {lora.spec['epochs']}, chosen by auto")
    assert rate.startswith("a higher learning rate") and f"{lora.spec['learning_rate']:g}" in rate
    (full_hint,) = hints[full.pk]
    assert full_hint["suggestions"] == ["more epochs (it ran 3; try 6)"]  # the learning rate advice is LoRA's

    client.force_login(tenant_a.owner)
    page = client.get(f"/o/acme/jobs/{lora.pk}").content.decode()
    shown = re.search(r'data-testid="job-hints".*?</section>', page, re.S).group(0)
    assert "looks under-trained" in shown and "a higher learning rate" in shown
    assert 'data-testid="job-hints"' not in client.get(f"/o/acme/jobs/{plateau.pk}").content.decode()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_compress_form_shows_only_the_chosen_kinds_options_in_the_browser(page, live_server, tenant_a, dataset, tiny_bert):
    from django.conf import settings
    from django.test import Client

    source = succeeded_finetune(tenant_a, dataset, name="sentiment", method="lora", history=(0.35, 0.82))
    client = Client()
    client.force_login(tenant_a.owner)
    page.context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
                               "url": live_server.url}])
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{live_server.url}/o/acme/jobs/{source.pk}")
    assert page.locator("[data-testid=job-hints]").is_visible()
    form = page.locator("form[data-testid=compress-form]")
    prune, distill = form.locator("fieldset[data-kind=prune]"), form.locator("fieldset[data-kind=distill]")
    assert form.locator("select[name=kind]").input_value() == "quantize"
    assert not prune.is_visible() and not distill.is_visible()
    form.locator("select[name=kind]").select_option("prune")
    assert prune.is_visible() and not distill.is_visible()
    form.locator("select[name=kind]").select_option("distill")
    assert distill.is_visible() and not prune.is_visible()
    form.locator("select[name=kind]").select_option("quantize")
    form.locator("button", has_text="Compress").click()
    page.wait_for_url(re.compile(r".*/jobs/\d+$"))
    assert page.locator("h1").inner_text().endswith("int8 of sentiment")
    connections.close_all()
    assert errors == []


from tests.dashboard.test_browser import page  # noqa: E402,F401  (the Chromium fixture)
