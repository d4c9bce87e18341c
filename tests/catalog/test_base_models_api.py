"""GET /api/v1/base-models: the catalog, for any member's key; one model by its id;
retired and unknown ids look the same (404); the OpenAPI schema says all of it."""
from __future__ import annotations

import pytest
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from catalog.models import BaseModel

pytestmark = pytest.mark.django_db


@pytest.fixture
def chat_model(db):
    return BaseModel.objects.create(
        slug="tiny-chat", name="Tiny Chat", architecture="llama", task_family="chat", parameter_count=1234,
        context_length=2048, source_kind="path", source="/srv/models/tiny-chat", license="apache-2.0",
        hub_id="example/tiny-chat", notes="The weights passed through 4-bit rounding.", chat_template_source="model",
        supported_tasks=["chat"], default_max_length=512, is_default=True)


@pytest.fixture
def member_client(tenant_a, api_for):
    """A read-only key: it acts as a plain member."""
    return api_for(tenant_a.key(scopes=["read"]))


def test_any_member_lists_the_catalog(member_client, chat_model):
    response = member_client.get("/api/v1/base-models")
    assert response.status_code == 200, response.content
    by_id = {m["id"]: m for m in response.json()}
    assert set(by_id) == {"all-minilm-l6-v2", "tiny-chat"}
    assert by_id["tiny-chat"] == {
        "id": "tiny-chat", "name": "Tiny Chat", "task_family": "chat", "architecture": "llama", "context_length": 2048,
        "parameter_count": 1234, "license": "apache-2.0", "hub_id": "example/tiny-chat",
        "notes": "The weights passed through 4-bit rounding.", "chat_template": "model", "job_kinds": ["chat_finetune"],
        "supported_tasks": ["chat"], "default_max_length": 512, "is_default": True}
    minilm = by_id["all-minilm-l6-v2"]
    assert minilm["task_family"] == "classification" and minilm["job_kinds"] == ["finetune", "distill"]
    assert minilm["context_length"] == 512 and minilm["chat_template"] is None and minilm["is_default"] is True
    assert minilm["hub_id"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert "source" not in minilm  # where the weights sit on the server is the operators' business


def test_the_list_filters_by_family(member_client, chat_model):
    assert [m["id"] for m in member_client.get("/api/v1/base-models?task_family=chat").json()] == ["tiny-chat"]
    refused = member_client.get("/api/v1/base-models?task_family=vision")
    assert refused.status_code == 400 and "task_family" in refused.json()["error"]["fields"]


def test_one_model_by_its_id(member_client, chat_model):
    response = member_client.get("/api/v1/base-models/tiny-chat")
    assert response.status_code == 200 and response.json()["context_length"] == 2048


def test_retired_and_unknown_models_are_the_same_404(member_client, chat_model):
    BaseModel.objects.filter(pk=chat_model.pk).update(is_active=False)
    retired, unknown = member_client.get("/api/v1/base-models/tiny-chat"), member_client.get("/api/v1/base-models/nope")
    assert retired.status_code == unknown.status_code == 404
    assert retired.json()["error"]["message"] == unknown.json()["error"]["message"]
    assert "tiny-chat" not in [m["id"] for m in member_client.get("/api/v1/base-models").json()]
    assert member_client.get("/api/v1/base-models/" + "x" * 5000).status_code == 404


def test_the_catalog_needs_a_key():
    for path in ("/api/v1/base-models", "/api/v1/base-models/all-minilm-l6-v2"):
        assert APIClient().get(path).status_code in (401, 403)
    anonymous = APIClient().get("/api/v1/base-models")
    assert anonymous.json()["error"]["code"] in ("not_authenticated", "authentication_failed")


def test_the_schema_documents_the_catalog():
    spec = SchemaGenerator().get_schema(request=None, public=True)
    listing, detail = spec["paths"]["/api/v1/base-models"]["get"], spec["paths"]["/api/v1/base-models/{slug}"]["get"]
    assert listing["operationId"] == "base_models_list" and detail["operationId"] == "base_models_retrieve"
    assert {p["name"] for p in listing["parameters"]} >= {"task_family"}
    assert "404" in detail["responses"]
    properties = spec["components"]["schemas"]["BaseModel"]["properties"]
    assert {"id", "name", "task_family", "context_length", "parameter_count", "license", "notes", "job_kinds",
            "chat_template"} <= set(properties)
    assert properties["context_length"].get("nullable") is True
    family = properties["task_family"]
    enum = spec["components"]["schemas"][family["allOf"][0]["$ref"].rsplit("/", 1)[1]] if "allOf" in family else family
    assert set(enum["enum"]) == {"classification", "chat"}
