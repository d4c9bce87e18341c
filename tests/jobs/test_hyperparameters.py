"""The fine-tune options added by issue 14 (workers/kinds.py), through the
platform: typed checks that name the field, 'auto' resolved from the data
(refit when the validation split was carved), the OpenAPI schema, and a quote
that counts the refit's second pass."""
from __future__ import annotations

import copy

import pytest
from drf_spectacular.generators import SchemaGenerator

from jobs import estimates
from jobs.hyperparameters import resolve
from jobs.models import Job

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(tenant_a, api_for):
    return api_for(tenant_a.key(scopes=["write"]))


def submit(client, dataset, status=201, **hyperparameters):
    response = client.post("/api/v1/jobs", {"dataset_id": dataset.pk, "base_model": "tiny-bert",
                                            "hyperparameters": hyperparameters}, format="json")
    assert response.status_code == status, response.content
    return response.json()


@pytest.mark.parametrize("name, value, message", [
    ("refit", "yes", 'must be true, false or "auto"'),
    ("refit", 1, 'must be true, false or "auto"'),
    ("freeze_embeddings", 0, 'must be true, false or "auto"'),
    ("lr_scheduler", "exponential", 'must be one of linear, cosine, constant_with_warmup or "auto"'),
    ("lr_scheduler", ["cosine"], "must be one of"),
    ("label_smoothing", 0.6, "must be between 0.0 and 0.5"),
    ("layer_lr_decay", 0.2, "must be between 0.5 and 1.0"),
    ("average_last_epochs", 9, "must be between 1 and 5"),
    ("head_lr_multiplier", 0.5, "must be between 1.0 and 100.0"),
    ("head_lr_multiplier", 101, "must be between 1.0 and 100.0"),
])
def test_a_bad_option_is_a_400_naming_it(client, dataset, tiny_bert, name, value, message):
    error = submit(client, dataset, status=400, **{name: value})["error"]
    assert message in " ".join(error["fields"][f"hyperparameters.{name}"]), error
    assert not Job.objects.exists()


def test_given_options_are_kept_and_auto_refits_a_carved_validation_split(client, dataset, tiny_bert):
    assert dataset.latest_version.report["split"]["source"] == "carved"
    job = submit(client, dataset, lr_scheduler="cosine", label_smoothing=0.1, average_last_epochs=2)
    assert job["spec"]["refit"] is True  # auto: the platform carved the validation split
    assert (job["spec"]["lr_scheduler"], job["spec"]["label_smoothing"], job["spec"]["average_last_epochs"]) == (
        "cosine", 0.1, 2)
    assert submit(client, dataset, refit=False)["spec"]["refit"] is False


def test_auto_does_not_refit_on_a_validation_split_the_user_uploaded(dataset, tiny_bert):
    version = copy.copy(dataset.latest_version)
    version.report = {**version.report, "split": {"source": "given"}}
    assert resolve({}, method="full", version=version, base_model=tiny_bert)["refit"] is False
    assert resolve({"refit": True}, method="full", version=version, base_model=tiny_bert)["refit"] is True


def test_lora_auto_adapts_every_linear_layer_of_the_encoder(dataset, tiny_bert):
    version = dataset.latest_version
    assert resolve({}, method="lora", version=version, base_model=tiny_bert)["lora_targets"] == [
        "query", "key", "value", "dense"]  # tiny-bert is a "bert"
    tiny_bert.architecture = "distilbert"
    assert resolve({}, method="lora", version=version, base_model=tiny_bert)["lora_targets"] == [
        "q_lin", "k_lin", "v_lin", "out_lin", "lin1", "lin2"]
    tiny_bert.architecture = "something-new"
    assert resolve({}, method="lora", version=version, base_model=tiny_bert)["lora_targets"] == ["query", "value"]
    assert resolve({"lora_targets": ["value"]}, method="lora", version=version, base_model=tiny_bert)["lora_targets"] == [
        "value"]
    assert "lora_targets" not in resolve({}, method="full", version=version, base_model=tiny_bert)


def test_the_schema_types_the_new_options():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    components = schema["components"]["schemas"]
    body = components[schema["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"][
        "$ref"].rsplit("/", 1)[1]]
    for variant in body.get("oneOf", []):  # one body per kind: the fine-tune's
        if "hyperparameters" in components[variant["$ref"].rsplit("/", 1)[1]].get("properties", {}):
            body = components[variant["$ref"].rsplit("/", 1)[1]]
            break
    options = body["properties"]["hyperparameters"]["properties"]
    assert options["refit"]["oneOf"][0] == {"type": "boolean"}
    assert options["lr_scheduler"]["oneOf"][0] == {"type": "string", "enum": ["linear", "cosine", "constant_with_warmup"]}
    assert options["average_last_epochs"]["oneOf"][0] == {"type": "integer", "minimum": 1, "maximum": 5}


def test_the_quote_counts_the_refit_pass(client, dataset, tiny_bert):
    with_refit = Job.objects.get(pk=submit(client, dataset, refit=True, epochs=2)["id"])
    without = Job.objects.get(pk=submit(client, dataset, refit=False, epochs=2)["id"])
    version = dataset.latest_version
    per_row = estimates.tokens_per_row(version.report, estimates.model_max_length(without))
    assert estimates.work_tokens(without) == pytest.approx(2 * version.train_count * per_row)
    assert estimates.work_tokens(with_refit) == pytest.approx(2 * (2 * version.train_count + version.validation_count) * per_row)


def test_auto_batch_size_halves_when_32_would_leave_too_few_steps(dataset, tiny_bert):
    version = copy.copy(dataset.latest_version)
    tiny_bert.parameter_count = 22_000_000
    version.train_count, version.label_count = 8_100, 77  # BANKING77 after a carved test split: 8 epochs × 254 steps
    assert resolve({}, method="full", version=version, base_model=tiny_bert)["batch_size"] == 32
    version.train_count = 2_430  # 8 × 76 steps at 32: fewer than 1,200
    assert resolve({}, method="full", version=version, base_model=tiny_bert)["batch_size"] == 16
    assert resolve({"batch_size": 64}, method="full", version=version, base_model=tiny_bert)["batch_size"] == 64
    assert resolve({"epochs": 20}, method="full", version=version, base_model=tiny_bert)["batch_size"] == 32
    tiny_bert.default_hyperparameters = {"batch_size": 8}  # the catalog's word comes first
    assert resolve({}, method="full", version=version, base_model=tiny_bert)["batch_size"] == 8


def test_a_distillation_student_trains_longer_at_a_larger_step(client, dataset, tiny_bert, tenant_a):
    from jobs.hyperparameters import STUDENT_EPOCHS_FACTOR, STUDENT_LR_FACTOR, STUDENT_MAX_EPOCHS
    from jobs.models import JobArtifact, JobKind, JobState

    version = copy.copy(dataset.latest_version)
    tiny_bert.parameter_count = 22_000_000
    for rows, finetune_epochs in ((1_000, 8), (20_000, 3), (60_000, 2)):
        version.train_count, version.label_count = rows, 2
        finetune = resolve({}, method="full", version=version, base_model=tiny_bert)
        student = resolve({}, method="full", version=version, base_model=tiny_bert, student=True)
        assert finetune["epochs"] == finetune_epochs
        assert student["epochs"] == min(STUDENT_MAX_EPOCHS, STUDENT_EPOCHS_FACTOR * finetune_epochs) > finetune_epochs
        assert student["learning_rate"] == pytest.approx(STUDENT_LR_FACTOR * finetune["learning_rate"])
    given = resolve({"epochs": 4, "learning_rate": 1e-4}, method="full", version=version, base_model=tiny_bert, student=True)
    assert (given["epochs"], given["learning_rate"]) == (4, 1e-4)  # what the user sets is kept

    # Through the API: a distillation on auto stores the student's values.
    tiny_bert.refresh_from_db()
    source = Job.objects.create(organization=tenant_a.organization, kind=JobKind.FINETUNE, state=JobState.SUCCEEDED,
                                dataset_version=dataset.latest_version, base_model=tiny_bert,
                                labels=sorted(dataset.latest_version.report["labels"]["counts"]), spec={"max_length": 32})
    JobArtifact.objects.create(job=source, organization=source.organization, name="model.zip", kind="model",
                               storage_name="x", size_bytes=1, sha256="0" * 64)
    distill = client.post("/api/v1/jobs", {"kind": "distill", "source_job_id": source.pk}, format="json").json()
    expected = resolve({}, method="full", version=dataset.latest_version, base_model=tiny_bert, student=True)
    assert (distill["spec"]["training"]["epochs"], distill["spec"]["training"]["learning_rate"]) == (
        expected["epochs"], pytest.approx(expected["learning_rate"]))
