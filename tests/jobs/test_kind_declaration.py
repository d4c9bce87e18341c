"""One declaration per job kind (workers/kinds.py) drives everything else: a
misspelled option is a 400 naming it and the accepted ones, for every kind; the
worker rebuilds a stored spec strictly; defaults are declared once; and a
bound changed in the declaration is followed by the API's check, the
dashboard's form and the OpenAPI schema."""
from __future__ import annotations

from types import MappingProxyType

import pytest
from drf_spectacular.generators import SchemaGenerator

from core.errors import ApplicationError
from dashboard.forms import CompressForm, JobLaunchForm
from jobs import hyperparameters, kind_runners, submission
from jobs.models import Job, JobArtifact, JobKind, JobState
from tenancy.actors import Actor
from workers import kinds
from workers.compression.run import CompressionSpec, _train
from workers.spec import FineTuneSpec

pytestmark = pytest.mark.django_db


@pytest.fixture
def client(tenant_a, api_for):
    return api_for(tenant_a.key(scopes=["write"]))


@pytest.fixture
def source(tenant_a, dataset, tiny_bert):
    """A succeeded fine-tune with a model to compress."""
    job = Job.objects.create(organization=tenant_a.organization, kind=JobKind.FINETUNE, state=JobState.SUCCEEDED,
                             dataset_version=dataset.latest_version, base_model=tiny_bert,
                             labels=sorted(dataset.latest_version.report["labels"]["counts"]), spec={"max_length": 32})
    JobArtifact.objects.create(job=job, organization=job.organization, name="model.zip", kind="model",
                               storage_name="x", size_bytes=1, sha256="0" * 64)
    return job


def body_for(kind: str, *, dataset, source, **extra) -> dict:
    if kind == "finetune":
        return {"dataset_id": dataset.pk, "base_model": "tiny-bert", **extra}
    return {"kind": kind, "source_job_id": source.pk, **({"sparsity": 0.3} if kind == "prune" else {}), **extra}


# --- a misspelled key is a 400, for every kind ------------------------------------------------

@pytest.mark.parametrize("kind, misspelled, meant", [
    ("finetune", {"hyperparameters": {"epoch": 2}}, "epochs"),
    ("finetune", {"lerning_rate": 1e-4}, "hyperparameters"),
    ("quantize", {"max_acuracy_drop": 2.0}, "max_accuracy_drop"),
    ("prune", {"recovery_epoch": 1}, "recovery_epochs"),
    ("prune", {"prune_methd": "heads"}, "prune_method"),
    ("distill", {"temprature": 3.0}, "temperature"),
    ("distill", {"hyperparameters": {"learing_rate": 1e-4}}, "learning_rate"),
])
def test_a_misspelled_option_is_a_400_naming_it_and_the_accepted_ones(client, dataset, source, kind, misspelled, meant):
    before = Job.objects.count()
    response = client.post("/api/v1/jobs", body_for(kind, dataset=dataset, source=source, **misspelled), format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    key = next(iter(misspelled))
    named = f"hyperparameters.{next(iter(misspelled[key]))}" if key == "hyperparameters" else key
    assert named in error["fields"], error
    assert meant in " ".join(error["fields"][named]), error  # the accepted ones are listed
    assert Job.objects.count() == before
    quote = client.post("/api/v1/jobs/quote", body_for(kind, dataset=dataset, source=source, **misspelled), format="json")
    assert quote.status_code == 400 and named in quote.json()["error"]["fields"]


def test_the_service_refuses_an_unknown_compression_option_too(tenant_a, source):
    """The dashboard calls the service directly: the same strictness there."""
    with pytest.raises(ApplicationError) as raised:
        submission.compression_submit(organization=tenant_a.organization, actor=Actor.for_membership(tenant_a.owner_membership), kind="distill",
                                    source_job_id=source.pk, options={"temprature": 3.0}, dry_run=True)
    assert "temprature" in raised.value.fields and "temperature" in raised.value.message
    assert not Job.objects.filter(kind=JobKind.DISTILL).exists()


# --- the worker rebuilds strictly -------------------------------------------------------------

def test_the_worker_rebuild_of_a_finetune_spec_raises_on_an_unknown_key(tenant_a, dataset, tiny_bert, media, tmp_path):
    job = Job.objects.create(organization=tenant_a.organization, kind=JobKind.FINETUNE, state=JobState.RUNNING,
                             dataset_version=dataset.latest_version, base_model=tiny_bert, attempts=1,
                             labels=sorted(dataset.latest_version.report["labels"]["counts"]),
                             spec={"epochs": 1, "learing_rate": 1e-3})
    with pytest.raises(ValueError, match="learing_rate.*accepted: .*learning_rate"):
        kind_runners.build_finetune_spec(job, tmp_path)
    job.spec = {"epochs": 1, "learning_rate": 1e-3}  # the same, spelled right, builds
    assert kind_runners.build_finetune_spec(job, tmp_path).learning_rate == 1e-3


def test_a_training_phase_of_a_compression_refuses_an_unknown_key(tmp_path):
    spec = CompressionSpec(kind="distill", source_model_dir=str(tmp_path), eval_file="e.jsonl", output_dir=str(tmp_path),
                           task="text_classification", train_file="t.jsonl", training={"epochs": 1, "warmup": 0.1})
    with pytest.raises(ValueError, match="warmup.*accepted: .*warmup_ratio"):
        _train(spec, None, name="distillation", base_dir=str(tmp_path), labels=["a", "b"], epochs=1)
    with pytest.raises(ValueError, match="temprature"):
        kinds.strict(CompressionSpec, {"temprature": 3.0}, kind="distill", source_model_dir="m", eval_file="e",
                     output_dir="o", task="text_classification")


# --- defaults declared once --------------------------------------------------------------------

def test_defaults_are_the_declarations(client, dataset, source):
    declared = kinds.defaults(kinds.FineTuneHyperparameters)
    worker = FineTuneSpec(task="t", base_model_path="m", train_file="t", validation_file="v", labels=[], output_dir="o",
                          checkpoint_dir="c")
    assert {name: getattr(worker, name) for name in declared} == declared
    assert (worker.distill_temperature, worker.distill_alpha) == (kinds.default_of(kinds.DistillOptions, "temperature"),
                                                                  kinds.default_of(kinds.DistillOptions, "alpha"))
    compression = CompressionSpec(kind="distill", source_model_dir="m", eval_file="e", output_dir="o", task="t")
    assert (compression.temperature, compression.alpha, compression.max_accuracy_drop, compression.prune_method,
            compression.recovery_epochs) == (2.0, 0.5, 1.0, "magnitude", 0)
    # The form shows each declared default ("auto (32)"); blank stays auto.
    form = JobLaunchForm()
    for name in form.HYPERPARAMETERS:
        meta = kinds.options_of(kinds.FineTuneHyperparameters)[name].metadata
        placeholder = form.fields[name].widget.attrs["placeholder"]
        assert placeholder == ("auto" if meta["auto"] else f"auto ({declared[name]})"), name
        assert form.fields[name].help_text.startswith(meta["help"]) and form.fields[name].initial is None
    # What the API stores when nothing is given: the declared defaults.
    distill = client.post("/api/v1/jobs", {"kind": "distill", "source_job_id": source.pk}, format="json").json()
    assert (distill["spec"]["temperature"], distill["spec"]["alpha"], distill["max_accuracy_drop"]) == (2.0, 0.5, 1.0)
    finetune = client.post("/api/v1/jobs", {"dataset_id": dataset.pk, "base_model": "tiny-bert", "method": "lora"},
                           format="json").json()
    for name, value in declared.items():
        if not kinds.options_of(kinds.FineTuneHyperparameters)[name].metadata["auto"]:
            assert finetune["spec"][name] == value, name


def test_resolve_follows_a_changed_default(monkeypatch, dataset, tiny_bert):
    f = kinds.options_of(kinds.FineTuneHyperparameters)["warmup_ratio"]
    monkeypatch.setattr(f, "default", 0.2)
    assert hyperparameters.resolve({}, method="full", version=dataset.latest_version, base_model=tiny_bert)["warmup_ratio"] == 0.2


# --- a bound changed in the declaration: the API, the form and the schema follow ---------------

def submit_schema(kind: str | None = None) -> dict:
    """The documented body of POST /jobs for `kind` (a oneOf discriminated by kind); without a kind, every
    kind's properties merged (each option is one kind's)."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    request = schema["paths"]["/api/v1/jobs"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body = schema["components"]["schemas"][request.rsplit("/", 1)[1]]
    assert body["discriminator"]["propertyName"] == "kind"
    assert set(body["discriminator"]["mapping"]) >= {"finetune", "quantize", "prune", "distill"}
    members = {k: schema["components"]["schemas"][ref.rsplit("/", 1)[1]] for k, ref in body["discriminator"]["mapping"].items()}
    if kind:
        return members[kind]["properties"]
    return {name: prop for member in members.values() for name, prop in member["properties"].items()}


def test_a_bound_changed_in_the_declaration_changes_the_api_the_form_and_the_schema(monkeypatch, client, dataset,
                                                                                      tiny_bert):
    f = kinds.options_of(kinds.FineTuneHyperparameters)["epochs"]
    assert f.metadata["max"] == 50 and submit_schema("finetune")["hyperparameters"]["properties"]["epochs"]["oneOf"][0]["maximum"] == 50
    monkeypatch.setattr(f, "metadata", MappingProxyType({**f.metadata, "max": 7}))

    body = {"dataset_id": dataset.pk, "base_model": "tiny-bert", "hyperparameters": {"epochs": 8}}
    refused = client.post("/api/v1/jobs", body, format="json")
    assert refused.status_code == 400
    assert refused.json()["error"]["fields"]["hyperparameters.epochs"] == ["must be between 1 and 7 (got 8)"]
    assert client.post("/api/v1/jobs", {**body, "hyperparameters": {"epochs": 7}}, format="json").status_code == 201

    form = JobLaunchForm({"epochs": "8"})
    assert form.fields["epochs"].max_value == 7 and form.fields["epochs"].widget.attrs["max"] == 7
    assert not form.is_valid() and form.errors["epochs"] == ["must be between 1 and 7"]

    epochs = submit_schema("finetune")["hyperparameters"]["properties"]["epochs"]
    assert epochs["oneOf"][0] == {"type": "integer", "minimum": 1, "maximum": 7}
    assert epochs["description"] == f.metadata["help"]


def test_a_compression_bound_changed_in_the_declaration_changes_the_api_the_form_and_the_schema(monkeypatch, client, source):
    f = kinds.options_of(kinds.PruneOptions)["sparsity"]
    monkeypatch.setattr(f, "metadata", MappingProxyType({**f.metadata, "max": 0.6}))
    response = client.post("/api/v1/jobs", {"kind": "prune", "source_job_id": source.pk, "sparsity": 0.7}, format="json")
    assert response.status_code == 400 and "between 0.05 and 0.6" in response.json()["error"]["fields"]["sparsity"][0]
    assert submit_schema("prune")["sparsity"]["oneOf"][0]["maximum"] == 0.6
    form = CompressForm({"kind": "prune", "sparsity": "0.7"})
    assert not form.is_valid() and form.errors["sparsity"] == ["must be between 0.05 and 0.6"]
    assert CompressForm({"kind": "prune", "sparsity": "0.6"}).is_valid()


def test_the_compress_form_is_generated_from_the_declarations(monkeypatch):
    """Its kinds, their titles, each kind's fieldset (every declared option, in order), the choices with
    their words, the defaults and the help: all from workers/kinds.py; another kind's fields are ignored."""
    form = CompressForm(base_models=[])
    assert [c for c, _ in form.fields["kind"].choices] == list(kinds.COMPRESSION_KINDS)
    assert dict(form.fields["kind"].choices)["distill"] == kinds.DistillOptions.title
    fieldsets = {f["kind"]: [bound.name for bound in f["fields"]] for f in form.fieldsets()}
    common = set(kinds.options_of(kinds.CompressionOptions))
    assert fieldsets["prune"] == [n for n in kinds.options_of(kinds.PruneOptions) if n not in common]
    assert fieldsets["distill"] == [n for n in kinds.options_of(kinds.DistillOptions) if n not in common] + ["epochs"]
    method = kinds.options_of(kinds.PruneOptions)["prune_method"]
    assert dict(form.fields["prune_method"].choices) == method.metadata["choice_labels"]
    assert form.fields["temperature"].initial == kinds.default_of(kinds.DistillOptions, "temperature")
    assert form.fields["recovery_epochs"].help_text.startswith(kinds.options_of(kinds.PruneOptions)["recovery_epochs"].metadata["help"])

    f = kinds.options_of(kinds.DistillOptions)["temperature"]
    monkeypatch.setattr(f, "metadata", MappingProxyType({**f.metadata, "help": "a new help", "max": 3.0}))
    changed = CompressForm({"kind": "distill", "temperature": "4", "sparsity": "lots"})
    assert changed.fields["temperature"].help_text.startswith("a new help")
    assert list(changed.errors) == ["temperature"]  # prune's bad sparsity is not distill's business
    quantize = CompressForm({"kind": "quantize", "temperature": "4", "sparsity": "lots", "max_accuracy_drop": "2"})
    assert quantize.is_valid() and quantize.service_kwargs()["options"] == {}
