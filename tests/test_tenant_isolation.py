"""Tenant isolation harness.

Walks every URL pattern under /api/v1/ and every organization page of the
dashboard with two organizations, A and B, and checks that B's credentials (an
API key with every scope, and B's owner logged in) reach none of A's objects:
a foreign id answers 404, lists show none of A's rows, creates land in B, and
A's rows are byte-for-byte unchanged afterwards.

A new URL pattern without a case here fails `test_every_route_has_a_case`:
later features extend API_CASES / DASHBOARD_OBJECT_KWARGS with their objects.
"""
from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import ApiKey
from billing.models import BillingAccount
from corpora.models import Dataset, DatasetVersion
from jobs.models import Job, JobArtifact, PredictionInput
from registry.models import UploadedModel
from tenancy.actors import Actor
from tenancy.models import Invitation, Membership, Organization, Role
from tenancy.services import invitation_create

pytestmark = pytest.mark.django_db


# --- the world ----------------------------------------------------------------

@dataclass
class World:
    a: object  # tests.conftest.Tenant
    b: object
    a_member: Membership
    b_member: Membership
    a_invitation: Invitation
    a_invitation_token: str
    a_key: ApiKey
    b_key_value: str
    a_dataset: Dataset
    a_job: Job
    a_model: object
    a_inputs: object = None  # a file of inputs for batch predictions


def _dataset_for(tenant, name):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from corpora.services import dataset_upload

    content = "text,label\n" + "".join(f"{name} row {i},{'x' if i % 2 else 'y'}\n" for i in range(20))
    version = dataset_upload(organization=tenant.organization, actor=Actor.for_membership(tenant.owner_membership),
                             uploaded=SimpleUploadedFile(f"{name}.csv", content.encode()))
    return version.dataset


@pytest.fixture
def world(make_tenant, make_user, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    a, b = make_tenant("Acme", "owner-a@example.com"), make_tenant("Beta", "owner-b@example.com")
    a_member = a.add_member(make_user(email="member-a@example.com"))
    b_member = b.add_member(make_user(email="member-b@example.com"))
    a_invitation, token = invitation_create(organization=a.organization, actor=Actor.for_membership(a.owner_membership),
                                            email="invitee-a@example.com", role=Role.MEMBER)
    a.key(name="a-key")
    a_dataset = _dataset_for(a, "secret-a")
    b_dataset = _dataset_for(b, "beta")
    a_job = _job_for(a, a_dataset)
    _job_for(b, b_dataset)
    return World(a, b, a_member, b_member, a_invitation, token, ApiKey.objects.get(name="a-key"), b.key(name="b-key"),
                 a_dataset, a_job, _model_for(a, tmp_path / "a-model"), _inputs_for(a, "secret-a"))


def _inputs_for(tenant, name):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from jobs.prediction_inputs import prediction_input_upload

    content = "id,text\n" + "".join(f"{name}-{i},{name} question {i}\n" for i in range(5))
    return prediction_input_upload(organization=tenant.organization, actor=Actor.for_membership(tenant.owner_membership),
                                   uploaded=SimpleUploadedFile(f"{name}.csv", content.encode()), name=name)


def check_prediction_inputs(world, client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    assert world.a_inputs.pk not in _ids(client.get("/api/v1/prediction-inputs"))
    created = client.post("/api/v1/prediction-inputs", {"file": SimpleUploadedFile("b.jsonl", b'{"text": "b asks"}\n')},
                          format="multipart")
    assert created.status_code == 201, created.content
    assert PredictionInput.objects.get(pk=created.json()["id"]).organization_id == world.b.organization.pk


def _model_upload(tenant, folder, name):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from registry.services import model_upload
    from tests.model_archives import tiny_classifier_folder, zip_bytes

    folder.mkdir(parents=True, exist_ok=True)
    archive = zip_bytes(tiny_classifier_folder(folder, labels=("x", "y")))
    return model_upload(organization=tenant.organization, actor=Actor.for_membership(tenant.owner_membership),
                        uploaded=SimpleUploadedFile(f"{name}.zip", archive), name=name)


def _model_for(tenant, folder):
    return _model_upload(tenant, folder, "secret-model-a")


def _job_for(tenant, dataset):
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from jobs.submission import job_submit

    job, _ = job_submit(organization=tenant.organization, actor=Actor.for_membership(tenant.owner_membership),
                        dataset_id=dataset.pk, base_model="all-minilm-l6-v2")
    stored = default_storage.save(f"jobs/{tenant.organization.pk}/{job.pk}/1/eval_report.json", ContentFile(b"{}"))
    JobArtifact.objects.create(job=job, organization=tenant.organization, name="eval_report.json", kind="report",
                               storage_name=stored, size_bytes=2, sha256="0" * 64)
    return job


def snapshot(organization: Organization) -> str:
    """Everything of A's that an attack could change, serialised."""
    return json.dumps({
        "organization": list(Organization.objects.filter(pk=organization.pk).values("name", "slug", "deactivated_at")),
        "members": list(Membership.objects.filter(organization=organization).order_by("id").values("id", "user_id", "role")),
        "invitations": list(Invitation.objects.filter(organization=organization).order_by("id")
                            .values("id", "email", "role", "accepted_at", "revoked_at", "expires_at")),
        "api_keys": list(ApiKey.objects.filter(organization=organization).order_by("id")
                         .values("id", "name", "scopes", "revoked_at", "expires_at")),
        "datasets": list(Dataset.objects.filter(organization=organization).order_by("id").values("id", "name", "task")),
        "dataset_versions": list(DatasetVersion.objects.filter(organization=organization).order_by("id")
                                 .values("id", "dataset_id", "number", "sha256", "source_file", "train_file")),
        "billing": list(BillingAccount.objects.filter(organization=organization).values(
            "plan_id", "status", "spend_cap_cents", "stripe_customer_id")),
        "prediction_inputs": list(PredictionInput.objects.filter(organization=organization).order_by("id")
                                  .values("id", "name", "storage_name")),
        "uploaded_models": list(UploadedModel.objects.filter(organization=organization).order_by("id")
                                .values("id", "name", "storage_name", "sha256")),
        "jobs": list(Job.objects.filter(organization=organization).order_by("id")
                     .values("id", "state", "cancel_requested_at", "pause_requested_at", "spec", "priority",
                             "attempts", "max_attempts")),
    }, default=str, sort_keys=True)


def b_credentials(world: World) -> dict[str, APIClient]:
    key_client = APIClient()
    key_client.credentials(HTTP_AUTHORIZATION=f"Bearer {world.b_key_value}")
    session_client = APIClient()
    session_client.force_login(world.b.owner)
    return {"api-key": key_client, "session": session_client}


# --- API cases ----------------------------------------------------------------

@dataclass
class Foreign:
    """A's object addressed by id: every method must answer 404."""
    kwargs: Callable[[World], dict]
    methods: dict  # method -> request body


@dataclass
class Scoped:
    """A collection or singleton that resolves to the caller's own organization."""
    check: Callable  # (world, client) -> None; asserts only B's data is seen/changed


def _ids(response) -> set:
    assert response.status_code == 200, response.content
    body = response.json()
    return {row["id"] for row in body.get("results", body if isinstance(body, list) else [body])}


def check_organization(world, client):
    assert client.get("/api/v1/organization").json()["id"] == world.b.organization.pk
    assert client.patch("/api/v1/organization", {"name": "Renamed by B"}, format="json").status_code == 200
    assert Organization.objects.get(pk=world.b.organization.pk).name == "Renamed by B"


def check_members(world, client):
    seen = _ids(client.get("/api/v1/members"))
    assert seen == set(Membership.objects.filter(organization=world.b.organization).values_list("id", flat=True))


def check_invitations(world, client):
    assert world.a_invitation.pk not in _ids(client.get("/api/v1/invitations"))
    created = client.post("/api/v1/invitations", {"email": "someone-new@example.com"}, format="json")
    assert created.status_code == 201
    assert Invitation.objects.get(pk=created.json()["id"]).organization_id == world.b.organization.pk


def check_api_keys(world, client):
    seen = _ids(client.get("/api/v1/api-keys"))
    assert world.a_key.pk not in seen and seen
    created = client.post("/api/v1/api-keys", {"name": "made-by-b", "scopes": ["read"]}, format="json")
    assert created.status_code == 201
    assert ApiKey.objects.get(pk=created.json()["id"]).organization_id == world.b.organization.pk


def check_datasets(world, client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    seen = _ids(client.get("/api/v1/datasets"))
    assert world.a_dataset.pk not in seen and seen
    content = b"text,label\n" + b"".join(b"b upload %d,%s\n" % (i, b"xy"[i % 2:i % 2 + 1]) for i in range(10))
    created = client.post("/api/v1/datasets", {"file": SimpleUploadedFile("b.csv", content)}, format="multipart")
    assert created.status_code == 201, created.content
    assert Dataset.objects.get(pk=created.json()["id"]).organization_id == world.b.organization.pk


def check_models(world, client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.model_archives import tiny_classifier_folder, zip_bytes

    assert world.a_model.pk not in _ids(client.get("/api/v1/models"))
    folder = Path(tempfile.mkdtemp())
    archive = zip_bytes(tiny_classifier_folder(folder, labels=("x", "y")))
    created = client.post("/api/v1/models", {"file": SimpleUploadedFile("b.zip", archive)}, format="multipart")
    assert created.status_code == 201, created.content
    assert UploadedModel.objects.get(pk=created.json()["id"]).organization_id == world.b.organization.pk
    assert created.json()["id"] in _ids(client.get("/api/v1/models"))


def check_base_models(world, client):
    """The catalog is the installation's, the same for every organization: B reads it, retired and unknown ids are
    the same 404, and A's uploaded model is no catalog id."""
    from catalog.models import BaseModel

    listed = client.get("/api/v1/base-models")
    assert listed.status_code == 200 and "all-minilm-l6-v2" in {m["id"] for m in listed.json()}
    assert client.get("/api/v1/base-models/all-minilm-l6-v2").json()["id"] == "all-minilm-l6-v2"
    BaseModel.objects.create(slug="retired", name="Retired", architecture="bert", source_kind="path", source="/x",
                             is_active=False)
    for slug in ("retired", "no-such-model", str(world.a_model.pk), "secret-model-a"):
        response = client.get(f"/api/v1/base-models/{slug}")
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found", slug


def check_plans(world, client):
    assert {p["slug"] for p in client.get("/api/v1/plans").json()} >= {"free", "pro"}


def check_billing_reads(world, client):
    """B's usage, plan, subscription and invoices never show A's: A has usage and an invoice, B none."""
    from billing.models import Invoice

    Invoice.objects.create(organization=world.a.organization, stripe_invoice_id="in_secret_a", status="paid",
                           stripe_created=timezone.now(), updated_from_event_at=timezone.now())
    assert client.get("/api/v1/billing/invoices").json() == []
    usage = client.get("/api/v1/billing/usage").json()
    assert all(row["job_id"] != world.a_job.pk for row in usage["per_job"])
    assert client.get("/api/v1/billing/plan").status_code == 200
    assert client.get("/api/v1/billing/subscription").json()["plan"]["slug"] == "free"


def check_spend_cap(world, client):
    from billing.models import BillingAccount

    response = client.patch("/api/v1/billing/spend-cap", {"spend_cap_usd": "7.00"}, format="json")
    assert response.status_code in (200, 403)  # session as B's owner, or B's admin key
    assert not BillingAccount.objects.filter(organization=world.a.organization, spend_cap_cents=700).exists()


def check_checkout(world, client):
    # Billing is off in tests unless a stand-in is configured: B is told so, A is untouched.
    assert client.post("/api/v1/billing/checkout", {"plan": "pro"}, format="json").status_code in (403, 409)
    assert client.post("/api/v1/billing/portal", format="json").status_code in (403, 409)


def check_quote(world, client):
    b_dataset = Dataset.objects.filter(organization=world.b.organization).first()
    quote = client.post("/api/v1/jobs/quote", {"dataset_id": b_dataset.pk, "base_model": "all-minilm-l6-v2"}, format="json")
    assert quote.status_code == 200, quote.content
    foreign = client.post("/api/v1/jobs/quote", {"dataset_id": world.a_dataset.pk, "base_model": "all-minilm-l6-v2"},
                          format="json")
    assert foreign.status_code == 400 and "dataset_id" in foreign.json()["error"]["fields"]


def check_jobs(world, client):
    seen = _ids(client.get("/api/v1/jobs"))
    assert world.a_job.pk not in seen and seen
    b_dataset = Dataset.objects.filter(organization=world.b.organization).first()
    created = client.post("/api/v1/jobs", {"dataset_id": b_dataset.pk, "base_model": "all-minilm-l6-v2"}, format="json")
    assert created.status_code == 201, created.content
    assert Job.objects.get(pk=created.json()["id"]).organization_id == world.b.organization.pk
    # A's dataset id in B's submission is "not found", not a job on A's data.
    foreign = client.post("/api/v1/jobs", {"dataset_id": world.a_dataset.pk, "base_model": "all-minilm-l6-v2"}, format="json")
    assert foreign.status_code == 400 and "dataset_id" in foreign.json()["error"]["fields"]
    # A's uploaded model, or A's job, as the source of B's compression job: not found.
    foreign = client.post("/api/v1/jobs", {"kind": "quantize", "source_model_id": world.a_model.pk, "dataset_id": b_dataset.pk},
                          format="json")
    assert foreign.status_code == 400 and "source_model_id" in foreign.json()["error"]["fields"]
    foreign = client.post("/api/v1/jobs", {"kind": "quantize", "source_job_id": world.a_job.pk}, format="json")
    assert foreign.status_code == 400 and "source_job_id" in foreign.json()["error"]["fields"]
    # A's job or A's uploaded model as the model of B's batch predictions: not found.
    for model in ({"job_id": world.a_job.pk}, {"uploaded_model_id": world.a_model.pk}):
        foreign = client.post("/api/v1/jobs", {"kind": "predict", "model": model, "dataset_id": b_dataset.pk},
                              format="json")
        assert foreign.status_code == 404, foreign.content


def check_audit_log(world, client):
    from audit.models import AuditEvent

    a_events = set(AuditEvent.objects.filter(organization=world.a.organization).values_list("pk", flat=True))
    assert a_events  # A's invitation and key were recorded
    seen = _ids(client.get("/api/v1/audit-log"))
    assert seen and not (seen & a_events)


def _a_job(w):
    return {"job_id": w.a_job.pk}


def _a_dataset(w):
    return {"dataset_id": w.a_dataset.pk}


def _a_version(w):
    return {"dataset_id": w.a_dataset.pk, "number": 1}


def _a_comparison(w):
    """A's finished comparison (kind evaluate) with a leaderboard row, made once per world."""
    if getattr(w, "_a_comparison", None) is None:
        row = {"key": f"job-{w.a_job.pk}/model.zip", "name": "secret model", "metric": "accuracy", "accuracy": 0.9,
               "throughput_batch32": 100.0, "size_bytes": 1, "cost_per_1m_usd": 1.0, "recommended": True}
        w._a_comparison = Job.objects.create(
            organization=w.a.organization, kind="evaluate", state="succeeded", dataset_version=w.a_job.dataset_version,
            spec={"models": []}, result={"leaderboard": {"metric": "accuracy", "rows": [row]}})
    return {"job_id": w._a_comparison.pk}



# --- the OpenAI-compatible surface (/v1/, namespace "openai") -------------------

def _a_chat(w):
    """A's chat file (a chat dataset version), a succeeded chat fine-tune on it with its model, made once per world."""
    if getattr(w, "_a_chat", None) is None:
        from django.core.files.uploadedfile import SimpleUploadedFile

        from catalog.models import BaseModel
        from corpora.services import dataset_upload

        base, _ = BaseModel.objects.get_or_create(slug="iso-chat", defaults=dict(
            name="Isolation chat", architecture="llama", task_family="chat", source_kind="path", source="/nowhere",
            supported_tasks=["chat"]))
        lines = "".join('{"messages": [{"role": "user", "content": "secret question %d"}, '
                        '{"role": "assistant", "content": "secret answer"}]}\n' % i for i in range(12))
        version = dataset_upload(organization=w.a.organization, actor=Actor.for_membership(w.a.owner_membership),
                                 uploaded=SimpleUploadedFile("secret-a.jsonl", lines.encode()), task="chat")
        job = Job.objects.create(organization=w.a.organization, kind="chat_finetune", state="succeeded", method="lora",
                                 dataset_version=version, base_model=base, spec={"epochs": 1}, finished_at=timezone.now())
        JobArtifact.objects.create(job=job, organization=w.a.organization, name="model.zip", kind="model",
                                   storage_name=f"jobs/{w.a.organization.pk}/{job.pk}/model.zip", size_bytes=1, sha256="0" * 64)
        w._a_chat = (version, job, f"ft:iso-chat:{w.a.organization.slug}::{job.pk}")
    return w._a_chat


def _a_file(w):
    return {"file_id": f"file-{_a_chat(w)[0].pk}"}


def _a_ftjob(w):
    return {"job_id": f"ftjob-{_a_chat(w)[1].pk}"}


def check_openai_files(world, client):
    from django.core.files.uploadedfile import SimpleUploadedFile

    a_file = _a_file(world)["file_id"]
    listed = client.get("/v1/files")
    assert listed.status_code == 200 and a_file not in {f["id"] for f in listed.json()["data"]}
    lines = b"".join(b'{"messages": [{"role": "user", "content": "b %d"}, {"role": "assistant", "content": "ok"}]}\n' % i
                     for i in range(10))
    created = client.post("/v1/files", {"file": SimpleUploadedFile("b.jsonl", lines), "purpose": "fine-tune"},
                          format="multipart")
    assert created.status_code == 200, created.content
    assert DatasetVersion.objects.get(pk=int(created.json()["id"][5:])).organization_id == world.b.organization.pk


def check_openai_jobs(world, client):
    a_job = _a_ftjob(world)["job_id"]
    listed = client.get("/v1/fine_tuning/jobs")
    assert listed.status_code == 200 and a_job not in {j["id"] for j in listed.json()["data"]}
    # A's file in B's create is not B's file: a 400 on training_file, no job on A's data
    foreign = client.post("/v1/fine_tuning/jobs", {"model": "iso-chat", "training_file": _a_file(world)["file_id"]},
                          format="json")
    assert foreign.status_code == 400 and foreign.json()["error"]["param"] == "training_file", foreign.content


def check_openai_models(world, client):
    listed = client.get("/v1/models")
    assert listed.status_code == 200 and _a_chat(world)[2] not in {m["id"] for m in listed.json()["data"]}


def _a_ft_model(w):
    return {"model_id": _a_chat(w)[2]}


def check_openai_chat_completions(world, client):
    """A's fine-tuned model named in B's chat completion: not found (no worker is asked, nothing is written)."""
    from serving.models import InferenceRequest

    response = client.post("/v1/chat/completions", {"model": _a_chat(world)[2], "messages": [
        {"role": "user", "content": "what are A's secrets?"}]}, format="json")
    assert response.status_code == 404 and response.json()["error"]["param"] == "model", response.content
    assert not InferenceRequest.objects.exists()


API_CASES: dict[str, Foreign | Scoped] = {
    "api:organization": Scoped(check_organization),
    "api:member-list": Scoped(check_members),
    "api:member-detail": Foreign(lambda w: {"membership_id": w.a_member.pk},
                                 {"get": None, "patch": {"role": "admin"}, "delete": None}),
    "api:invitation-list": Scoped(check_invitations),
    "api:invitation-detail": Foreign(lambda w: {"invitation_id": w.a_invitation.pk}, {"get": None, "delete": None}),
    "api:api-key-list": Scoped(check_api_keys),
    "api:audit-log": Scoped(check_audit_log),
    "api:api-key-detail": Foreign(lambda w: {"api_key_id": w.a_key.pk}, {"get": None, "delete": None}),
    "api:dataset-list": Scoped(check_datasets),
    "api:dataset-detail": Foreign(_a_dataset, {"get": None, "delete": None}),
    "api:dataset-version-list": Foreign(_a_dataset, {"get": None, "post": "upload"}),
    "api:dataset-version-detail": Foreign(_a_version, {"get": None, "delete": None}),
    "api:dataset-version-report": Foreign(_a_version, {"get": None}),
    "api:dataset-version-preview": Foreign(_a_version, {"get": None}),
    "api:dataset-version-csv": Foreign(lambda w: {**_a_version(w), "kind": "preview"}, {"get": None}),
    "api:model-list": Scoped(check_models),
    "api:prediction-input-list": Scoped(check_prediction_inputs),
    "api:prediction-input-detail": Foreign(lambda w: {"input_id": w.a_inputs.pk}, {"get": None, "delete": None}),
    "api:plan-list": Scoped(check_plans),
    "api:base-model-list": Scoped(check_base_models),
    "api:base-model-detail": Scoped(check_base_models),
    "api:billing-plan": Scoped(check_billing_reads),
    "api:billing-subscription": Scoped(check_billing_reads),
    "api:billing-usage": Scoped(check_billing_reads),
    "api:billing-invoices": Scoped(check_billing_reads),
    "api:billing-spend-cap": Scoped(check_spend_cap),
    "api:billing-checkout": Scoped(check_checkout),
    "api:billing-portal": Scoped(check_checkout),
    "api:job-quote": Scoped(check_quote),
    "api:model-detail": Foreign(lambda w: {"model_id": w.a_model.pk}, {"get": None, "delete": None}),
    "api:job-list": Scoped(check_jobs),
    "api:job-detail": Foreign(_a_job, {"get": None}),
    "api:job-cancel": Foreign(_a_job, {"post": {}}),
    "api:job-pause": Foreign(_a_job, {"post": {}}),
    "api:job-resume": Foreign(_a_job, {"post": {}}),
    "api:job-events": Foreign(_a_job, {"get": None}),
    "api:job-metrics": Foreign(_a_job, {"get": None}),
    "api:job-artifacts": Foreign(_a_job, {"get": None}),
    "api:job-artifact-download": Foreign(lambda w: {"job_id": w.a_job.pk, "name": "eval_report.json"}, {"get": None}),
    "api:job-leaderboard": Foreign(_a_comparison, {"get": None}),
    "api:job-leaderboard-csv": Foreign(_a_comparison, {"get": None}),
    "openai:file-list": Scoped(check_openai_files),
    "openai:file-detail": Foreign(_a_file, {"get": None, "delete": None}),
    "openai:file-content": Foreign(_a_file, {"get": None}),
    "openai:job-list": Scoped(check_openai_jobs),
    "openai:job-detail": Foreign(_a_ftjob, {"get": None}),
    "openai:job-cancel": Foreign(_a_ftjob, {"post": {}}),
    "openai:job-pause": Foreign(_a_ftjob, {"post": {}}),
    "openai:job-resume": Foreign(_a_ftjob, {"post": {}}),
    "openai:job-events": Foreign(_a_ftjob, {"get": None}),
    "openai:job-checkpoints": Foreign(_a_ftjob, {"get": None}),
    "openai:model-list": Scoped(check_openai_models),
    "openai:model-detail": Foreign(_a_ft_model, {"get": None, "delete": None}),
    "openai:chat-completions": Scoped(check_openai_chat_completions),
    "api:job-predict": Foreign(_a_job, {"post": {"inputs": ["what did A train on?"]}}),
    "api:model-predict": Foreign(lambda w: {"model_id": w.a_model.pk}, {"post": {"inputs": ["what did A upload?"]}}),
}
# Public by design: the API's own documentation.
API_PUBLIC = {"api:schema", "api:docs", "api:redoc", "openai:openapi"}

# --- dashboard cases ------------------------------------------------------------

# Every organization page takes <slug>; object ids in its path come from here.
DASHBOARD_OBJECT_KWARGS: dict[str, Callable[[World], dict]] = {
    "dashboard:overview": lambda w: {},
    "dashboard:settings": lambda w: {},
    "dashboard:members": lambda w: {},
    "dashboard:audit-log": lambda w: {},
    "dashboard:member-role": lambda w: {"membership_id": w.a_member.pk},
    "dashboard:member-remove": lambda w: {"membership_id": w.a_member.pk},
    "dashboard:invitation-revoke": lambda w: {"invitation_id": w.a_invitation.pk},
    "dashboard:api-keys": lambda w: {},
    "dashboard:api-key-revoke": lambda w: {"api_key_id": w.a_key.pk},
    "dashboard:datasets": lambda w: {},
    "dashboard:dataset-detail": _a_dataset,
    "dashboard:dataset-delete": _a_dataset,
    "dashboard:dataset-version-delete": _a_version,
    "dashboard:dataset-version-csv": lambda w: {**_a_version(w), "kind": "preview"},
    "dashboard:models": lambda w: {},
    "dashboard:model-detail": lambda w: {"model_id": w.a_model.pk},
    "dashboard:model-compress": lambda w: {"model_id": w.a_model.pk},
    "dashboard:model-predict": lambda w: {"model_id": w.a_model.pk},
    "dashboard:model-delete": lambda w: {"model_id": w.a_model.pk},
    "dashboard:jobs": lambda w: {},
    "dashboard:job-quote": lambda w: {},
    "dashboard:billing": lambda w: {},
    "dashboard:billing-checkout": lambda w: {},
    "dashboard:billing-portal": lambda w: {},
    "dashboard:billing-spend-cap": lambda w: {},
    "dashboard:job-detail": _a_job,
    "dashboard:job-cancel": _a_job,
    "dashboard:job-pause": _a_job,
    "dashboard:job-resume": _a_job,
    "dashboard:job-compress": _a_job,
    "dashboard:job-artifact": lambda w: {"job_id": w.a_job.pk, "name": "eval_report.json"},
    "dashboard:job-try": _a_job,
    "dashboard:model-try": lambda w: {"model_id": w.a_model.pk},
    "dashboard:job-compare": _a_job,
    "dashboard:job-predict": _a_job,
    "dashboard:compare": lambda w: {},
    "dashboard:job-leaderboard-csv": _a_comparison,
}
DASHBOARD_POST_BODY = {"name": "Renamed by B", "role": "owner", "email": "x@example.com", "scopes": ["read"]}
# Not organization pages (no slug): each has a reason and its own tests.
NON_ORGANIZATION_ROUTES = {
    "dashboard:home": "redirects to one of the user's own organizations",
    "dashboard:organization-create": "creates a new organization owned by the caller",
    "dashboard:invitation-accept": "token-addressed; see test_foreign_invitation_token_cannot_be_used",
    "signup": "public", "login": "public", "logout": "public", "password_reset": "public",
    "password_reset_done": "public", "password_reset_confirm": "public", "password_reset_complete": "public",
    "healthz": "public probe", "readyz": "public probe",
    "metrics": "operators' Prometheus scrape: bearer token or staff session; see tests/core/test_metrics.py",
    "stripe-webhook": "Stripe's deliveries, signature-verified; see tests/billing/test_webhooks.py",
}


def walk(patterns=None, namespace=None, prefix=""):
    for entry in patterns if patterns is not None else get_resolver().url_patterns:
        if isinstance(entry, URLResolver):
            ns = entry.namespace or namespace
            if ns == "admin":
                continue  # operators' admin: staff only, outside the tenancy model
            yield from walk(entry.url_patterns, ns, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern) and entry.name:
            name = f"{namespace}:{entry.name}" if namespace else entry.name
            yield name, prefix + str(entry.pattern), set(entry.pattern.converters) | set(getattr(entry.pattern, "regex").groupindex)


def test_every_route_has_a_case():
    missing = []
    for name, route, params in walk():
        if name.startswith(("api:", "openai:")):
            if name not in API_CASES and name not in API_PUBLIC:
                missing.append(f"API route {route} ({name}) has no isolation case in API_CASES")
        elif "slug" in params:
            if name not in DASHBOARD_OBJECT_KWARGS:
                missing.append(f"organization page {route} ({name}) has no entry in DASHBOARD_OBJECT_KWARGS")
        elif name not in NON_ORGANIZATION_ROUTES:
            missing.append(f"route {route} ({name}) is unclassified: add it to NON_ORGANIZATION_ROUTES with a reason")
    assert not missing, "\n".join(missing)


def test_harness_would_fail_on_an_uncovered_route(monkeypatch):
    """The harness can fail: drop one case and it notices."""
    monkeypatch.delitem(API_CASES, "api:api-key-detail")
    with pytest.raises(AssertionError, match="api-key-detail"):
        test_every_route_has_a_case()


@pytest.mark.parametrize("credential", ["api-key", "session"])
@pytest.mark.parametrize("route_name", sorted(API_CASES))
def test_api_route_is_isolated(world, route_name, credential):
    client = b_credentials(world)[credential]
    if route_name.startswith("openai:"):
        _a_chat(world)  # A's chat file, fine-tune and model exist before the snapshot
    if "leaderboard" in route_name:
        _a_comparison(world)  # A's comparison exists before the snapshot
    before = snapshot(world.a.organization)
    case = API_CASES[route_name]
    if isinstance(case, Foreign):
        url = reverse(route_name, kwargs=case.kwargs(world))
        for method, body in case.methods.items():
            if body == "upload":
                from django.core.files.uploadedfile import SimpleUploadedFile

                upload = {"file": SimpleUploadedFile("x.csv", b"text,label\nfrom b,x\nalso b,y\n")}
                response = client.post(url, upload, format="multipart")
            elif body is not None:
                response = getattr(client, method)(url, body, format="json")
            else:
                response = getattr(client, method)(url)
            assert response.status_code == 404, f"{method.upper()} {url} as B ({credential}) → {response.status_code}"
            assert response.json()["error"]["code"] == "not_found"
    else:
        case.check(world, client)
    assert snapshot(world.a.organization) == before, f"{route_name} changed A's data"


@pytest.mark.parametrize("route_name", sorted(DASHBOARD_OBJECT_KWARGS))
def test_dashboard_page_is_isolated(client, world, route_name):
    client.force_login(world.b.owner)
    if "leaderboard" in route_name:
        _a_comparison(world)  # A's comparison exists before the snapshot
    before_a, object_kwargs = snapshot(world.a.organization), DASHBOARD_OBJECT_KWARGS[route_name](world)
    # A's slug (with A's objects) is a 404 for B ...
    foreign = reverse(route_name, kwargs={"slug": world.a.organization.slug, **object_kwargs})
    assert client.get(foreign).status_code == 404
    assert client.post(foreign, DASHBOARD_POST_BODY).status_code == 404
    # ... and so are A's objects under B's own slug.
    if object_kwargs:
        nested = reverse(route_name, kwargs={"slug": world.b.organization.slug, **object_kwargs})
        statuses = {client.get(nested).status_code, client.post(nested, DASHBOARD_POST_BODY).status_code}
        # The method the page implements answers 404; the other may be 405.
        assert 404 in statuses and statuses <= {404, 405}, statuses
    assert snapshot(world.a.organization) == before_a, f"{route_name} changed A's data"


def test_foreign_invitation_token_cannot_be_used(client, world):
    client.force_login(world.b.owner)
    before = snapshot(world.a.organization)
    response = client.post(reverse("dashboard:invitation-accept", args=[world.a_invitation_token]))
    assert response.status_code == 403
    assert snapshot(world.a.organization) == before


def test_nonexistent_slug_and_foreign_slug_look_the_same(client, world):
    client.force_login(world.b.owner)
    foreign = client.get(f"/o/{world.a.organization.slug}/members")
    missing = client.get("/o/no-such-org/members")
    assert foreign.status_code == missing.status_code == 404

    def normalised(response):  # per-request values aside, the pages are identical
        body = response.content.decode().replace(response["X-Request-ID"], "")
        body = re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", body)
        return re.sub(r'"X-CSRFToken": "[^"]*"', "", body)

    assert normalised(foreign) == normalised(missing)


def test_a_reaches_its_own_openai_objects(world):
    """The /v1/ 404s above are B's alone: A's own key reads every one of those objects."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {world.a.key()}")
    for route_name, case in API_CASES.items():
        if route_name.startswith("openai:") and isinstance(case, Foreign) and "get" in case.methods:
            response = client.get(reverse(route_name, kwargs=case.kwargs(world)))
            assert response.status_code == 200, f"{route_name}: {response.status_code} {response.content[:200]!r}"
