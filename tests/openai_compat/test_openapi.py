"""GET /v1/openapi.json: the OpenAI-compatible surface's own OpenAPI 3 schema (separate from /api/v1/schema). It
lists every /v1/ route with each of its methods, validates as OpenAPI 3.0, and the objects the presenters return
on a real job, file, event, checkpoint and model have exactly the properties it documents."""
from __future__ import annotations

import re

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from openapi_spec_validator import validate

from jobs.models import Job, JobCheckpoint, JobEvent
from openai_compat import presenters
from tenancy.actors import Actor

from .conftest import chat_jsonl

from tests.url_routes import url_patterns

pytestmark = pytest.mark.django_db

METHODS = ("get", "post", "put", "patch", "delete")


def v1_routes() -> set[tuple[str, str]]:
    """(method, OpenAPI path) of every named /v1/ route, from the URL resolver and each view's handlers."""
    found = set()
    for route, pattern, view_class in url_patterns():
        if route.startswith("v1/") and pattern.name:
            path = "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route)
            # a function view: the methods its decorator allows (require_GET)
            methods = ("get",) if view_class is None else [m for m in METHODS if hasattr(view_class, m)]
            found.update((m, path) for m in methods)
    return found


@pytest.fixture
def schema(client):
    response = client.get("/v1/openapi.json")  # no credentials: public, as /api/v1/schema is
    assert response.status_code == 200 and response["Content-Type"] == "application/json"
    return response.json()


def test_schema_lists_every_v1_route_with_its_methods(schema):
    documented = {(method, path) for path, item in schema["paths"].items() for method in item if method in METHODS}
    routes = v1_routes()
    assert len(routes) >= 17  # files ×5, jobs ×9, models ×3, the schema itself
    assert routes - documented == set(), "routes missing from /v1/openapi.json"
    assert documented - routes == set(), "/v1/openapi.json documents routes that do not exist"
    assert ("post", "/v1/fine_tuning/jobs/{job_id}/pause") in documented
    assert all(path.startswith("/v1/") for path in schema["paths"])


def test_schema_is_valid_openapi_3_and_separate_from_the_native_one(schema, client):
    validate(schema)
    assert schema["openapi"].startswith("3.0")
    native = client.get("/api/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    assert not any(path.startswith("/v1/") for path in native["paths"])
    error = schema["components"]["schemas"]["Error"]["properties"]["error"]["properties"]
    assert set(error) == {"message", "type", "param", "code"}
    statuses = schema["components"]["schemas"]["FineTuningJob"]["properties"]["status"]["enum"]
    assert "paused" in statuses and set(presenters.STATUS.values()) <= set(statuses)


def _properties(schema, name):
    return set(schema["components"]["schemas"][name]["properties"])


def test_presented_objects_have_exactly_the_documented_properties(schema, tenant_a, media, chat_model, make_tenant):
    from corpora.services import dataset_upload

    version = dataset_upload(organization=tenant_a.organization, actor=Actor.for_membership(tenant_a.owner_membership),
                             uploaded=SimpleUploadedFile("chat.jsonl", chat_jsonl()), task="chat")
    job = Job.objects.create(organization=tenant_a.organization, kind="chat_finetune", state="succeeded", method="lora",
                             dataset_version=version, base_model=chat_model, finished_at=timezone.now(),
                             spec={"epochs": 2, "batch_size": 4, "learning_rate": 2e-4})
    event = JobEvent.objects.create(job=job, message="Job succeeded.")
    checkpoint = JobCheckpoint.objects.create(job=job, attempt=1, step=4, path="x", metrics={"eval_loss": 1.5})
    presented = {
        "File": presenters.file_object(version),
        "FineTuningJob": presenters.job_object(job),
        "FineTuningJobEvent": presenters.event_object(event),
        "FineTuningJobCheckpoint": presenters.checkpoint_object(checkpoint, job=job),
        "Model": presenters.fine_tuned_model_object(job),
    }
    for name, body in presented.items():
        assert set(body) == _properties(schema, name), name
    job_schema = schema["components"]["schemas"]["FineTuningJob"]["properties"]
    assert set(presented["FineTuningJob"]["lathe"]) == set(job_schema["lathe"]["properties"])
    assert set(presented["File"]["lathe"]) == set(schema["components"]["schemas"]["File"]["properties"]["lathe"]["properties"])
    assert set(presenters.base_model_object(chat_model)) == _properties(schema, "Model")
