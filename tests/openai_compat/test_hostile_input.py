"""Hostile input on every write route of /v1/. The shared table (tests/core/test_hostile_input.py) walks
/api/v1/ and checks Lathe's native error body; this surface answers OpenAI's body instead and takes multipart
uploads, so its routes get this focused table: the shared hostile JSON bodies (reused from there) for the JSON
routes, a multipart table for POST /v1/files. Each answer is a 4xx in OpenAI's shape and no table gains or loses
a row."""
from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from tests.url_routes import url_patterns
from django.utils import timezone
from rest_framework.test import APIClient

from jobs.models import Job, JobArtifact
from tests.core import test_hostile_input as shared
from tests.core.test_hostile_input import Endpoint, Hostile, hostile_bodies, row_counts, send
from tenancy.actors import Actor

pytestmark = pytest.mark.django_db

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
world = shared.world  # the shared table's world (one organization with one of everything), as a fixture here


@pytest.fixture
def chat_world(world):
    """The shared world plus a chat file and a succeeded chat fine-tune with its model (on 'hostile-chat')."""
    from catalog.models import BaseModel
    from corpora.services import dataset_upload

    lines = "".join('{"messages": [{"role": "user", "content": "q %d"}, {"role": "assistant", "content": "a"}]}\n' % i
                    for i in range(12))
    version = dataset_upload(organization=world.tenant.organization, actor=Actor.for_membership(world.tenant.owner_membership),
                             uploaded=SimpleUploadedFile("chat.jsonl", lines.encode()), task="chat")
    job = Job.objects.create(organization=world.tenant.organization, kind="chat_finetune", state="succeeded", method="lora",
                             dataset_version=version, base_model=BaseModel.objects.get(slug="hostile-chat"),
                             finished_at=timezone.now())
    JobArtifact.objects.create(job=job, organization=world.tenant.organization, name="model.zip", kind="model",
                               storage_name="jobs/none/model.zip", size_bytes=1, sha256="0" * 64)
    return {"file": f"file-{version.pk}", "job": f"ftjob-{job.pk}",
            "model": f"ft:hostile-chat:{world.tenant.organization.slug}::{job.pk}", "key": world.key}


def _create(w):
    return ({"model": "hostile-chat", "training_file": w["file"], "suffix": "hostile", "seed": 3, "metadata": {"team": "x"},
             "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2, "batch_size": 4}}}},
            {"model": "hostile-chat", "training_file": w["file"],
             "hyperparameters": {"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 0.5}})


ENDPOINTS = {
    ("POST", "v1/fine_tuning/jobs"): Endpoint(lambda w: "/v1/fine_tuning/jobs", _create),
    ("POST", "v1/fine_tuning/jobs/<str:job_id>/cancel"): Endpoint(lambda w: f"/v1/fine_tuning/jobs/{w['job']}/cancel"),
    ("POST", "v1/fine_tuning/jobs/<str:job_id>/pause"): Endpoint(lambda w: f"/v1/fine_tuning/jobs/{w['job']}/pause"),
    ("POST", "v1/fine_tuning/jobs/<str:job_id>/resume"): Endpoint(lambda w: f"/v1/fine_tuning/jobs/{w['job']}/resume"),
    ("DELETE", "v1/files/<str:file_id>"): Endpoint(lambda w: f"/v1/files/{w['file']}"),
    ("DELETE", "v1/models/<str:model_id>"): Endpoint(lambda w: f"/v1/models/{w['model']}"),
    # Every hostile variant is refused before an inference worker is asked (none runs here: a valid body is a 503).
    ("POST", "v1/chat/completions"): Endpoint(lambda w: "/v1/chat/completions", lambda w: (
        {"model": w["model"], "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8, "temperature": 0.5},)),
}
MULTIPART_ROUTES = {("POST", "v1/files")}


def v1_write_routes() -> set[tuple[str, str]]:
    found = set()
    for route, pattern, _view_class in url_patterns():
        view_class = getattr(pattern.callback, "cls", None)
        if not route.startswith("v1/") or view_class is None:
            continue  # the unnamed catch-all 404 (openai_compat.api.unsupported_endpoint) writes nothing
        found.update((m, route) for m in WRITE_METHODS if hasattr(view_class, m.lower()))
    return found


def test_every_v1_write_route_is_in_a_table():
    assert v1_write_routes() == set(ENDPOINTS) | MULTIPART_ROUTES


def assert_openai_error(response, case: Hostile) -> dict:
    label = f"{case.name}: {response.status_code} {response.content[:300]!r}"
    assert 400 <= response.status_code < 500 and response.status_code != 429, label
    if case.status:
        assert response.status_code == case.status, label
    assert response["Content-Type"].startswith("application/json"), label
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, label
    error = body["error"]
    assert error["message"] and error["type"] == "invalid_request_error", label
    text = error["message"] + " " + str(error["param"])
    for word in case.says:
        assert word in text, f"{label}: the answer should mention {word!r}"
    return error


@pytest.mark.parametrize("route", sorted(ENDPOINTS), ids=lambda r: f"{r[0]} {r[1]}")
def test_hostile_json_bodies_get_an_openai_4xx_and_write_nothing(chat_world, route):
    method, _ = route
    endpoint = ENDPOINTS[route]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {chat_world['key']}")
    before = row_counts()
    for case in hostile_bodies(method, endpoint, chat_world):
        assert_openai_error(send(client, method, endpoint.path(chat_world), case, sign=False), case)
        assert row_counts() == before, f"{case.name}: rows were written or removed"


def chat_line(i: int) -> bytes:
    return b'{"messages": [{"role": "user", "content": "q %d"}, {"role": "assistant", "content": "a"}]}\n' % i


GOOD = b"".join(chat_line(i) for i in range(12))
MULTIPART_CASES = {
    "no file": ({"purpose": "fine-tune"}, "file"),
    "no purpose": ({"file": ("a.jsonl", GOOD)}, "purpose"),
    "another purpose": ({"file": ("a.jsonl", GOOD), "purpose": "assistants"}, "purpose"),
    "a NUL in purpose": ({"file": ("a.jsonl", GOOD), "purpose": "fine-tune\x00"}, "purpose"),
    "a 100 kB purpose": ({"file": ("a.jsonl", GOOD), "purpose": "x" * 100_000}, "purpose"),
    "an empty file": ({"file": ("a.jsonl", b""), "purpose": "fine-tune"}, "empty"),
    "binary garbage": ({"file": ("a.jsonl", bytes(range(256)) * 40), "purpose": "fine-tune"}, ""),
    "not UTF-8": ({"file": ("a.jsonl", GOOD + b'{"messages": "\xff\xfe"}\n'), "purpose": "fine-tune"}, ""),
    "a cut-off line": ({"file": ("a.jsonl", GOOD + b'{"messages": [\n'), "purpose": "fine-tune"}, "13"),
    "a line nested 100,000 deep": ({"file": ("a.jsonl", GOOD + b"[" * 100_000 + b"]" * 100_000 + b"\n"),
                                    "purpose": "fine-tune"}, ""),
    "1e400 in a line": ({"file": ("a.jsonl", GOOD + b'{"messages": 1e400}\n'), "purpose": "fine-tune"}, ""),
    "a CSV": ({"file": ("a.csv", b"text,label\nhello,x\nbye,y\n"), "purpose": "fine-tune"}, ""),
    "not chat": ({"file": ("a.jsonl", GOOD + b'{"messages": [{"role": "robot", "content": "x"}]}\n'),
                  "purpose": "fine-tune"}, "line 13"),
}


@pytest.mark.parametrize("case", sorted(MULTIPART_CASES))
def test_hostile_uploads_get_an_openai_4xx_and_write_nothing(chat_world, case):
    fields, says = MULTIPART_CASES[case]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {chat_world['key']}")
    body = {k: SimpleUploadedFile(v[0], v[1]) if isinstance(v, tuple) else v for k, v in fields.items()}
    before = row_counts()
    response = client.post("/v1/files", body, format="multipart")
    assert_openai_error(response, Hostile(case, b"", says=(says,) if says else ()))
    assert row_counts() == before


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "application/x-www-form-urlencoded"])
def test_an_upload_that_is_not_multipart_is_415(chat_world, content_type):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {chat_world['key']}")
    response = client.generic("POST", "/v1/files", json.dumps({"purpose": "fine-tune"}), content_type=content_type)
    assert_openai_error(response, Hostile(content_type, b"", status=415))


@pytest.mark.parametrize("query, param", [
    ("/v1/fine_tuning/jobs?after=garbage", "after"), ("/v1/fine_tuning/jobs?limit=0", "limit"),
    ("/v1/fine_tuning/jobs?limit=abc", "limit"), ("/v1/fine_tuning/jobs?limit=101", "limit"),
    ("/v1/fine_tuning/jobs?metadata[a__b]=x", "metadata[a__b]"), ("/v1/files?order=sideways", "order"),
    ("/v1/files?after=ftjob-1", "after"),
])
def test_hostile_queries_are_a_400_naming_the_parameter(chat_world, query, param):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {chat_world['key']}")
    response = client.get(query)
    assert response.status_code == 400 and response.json()["error"]["param"] == param, response.content
