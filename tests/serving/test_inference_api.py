"""The predict endpoints and /v1/chat/completions without a worker answering: 503 decided at once when none
is up, the time-out path when one is seen but never answers, 402 when the allowance is spent, and the table
of malformed bodies (a 400 naming the field, nothing written), other organizations' models (404)."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from billing.models import InferenceUsage
from jobs.models import JobState
from registry.services import model_upload
from serving.models import InferenceRequest, InferenceWorker, RequestState
from tenancy.actors import Actor
from tests.model_archives import tiny_classifier_folder, zip_bytes

from .helpers import store_model, succeeded_job

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(tenant_a, tenant_b, dataset, media, tmp_path, settings):
    settings.LATHE_INFERENCE_QUEUE = "inference-nobody"
    folder = tiny_classifier_folder(tmp_path / "m", labels=("a", "b"), layers=1)
    uploaded = model_upload(organization=tenant_a.organization, actor=Actor.for_membership(tenant_a.owner_membership),
                            uploaded=SimpleUploadedFile("m.zip", zip_bytes(folder)), name="m")
    job = succeeded_job(tenant_a, dataset.latest_version, name="clf", labels=("a", "b"))
    store_model(job, zip_bytes(folder))
    store_model(job, zip_bytes(folder), name="model-onnx-int8.zip")
    queued = succeeded_job(tenant_a, dataset.latest_version)
    queued.state = JobState.QUEUED
    queued.save(update_fields=["state"])
    return {"upload": uploaded, "job": job, "queued": queued}


def alive_worker(queue: str, **fields) -> InferenceWorker:
    now = timezone.now()
    return InferenceWorker.objects.create(**{"name": f"fake@{queue}", "queue": queue, "device_class": "cpu",
                                             "started_at": now, "last_seen_at": now, **fields})


def test_no_worker_up_is_a_503_at_once_with_retry_after(world, tenant_a, api_for, settings):
    api = api_for(tenant_a.key())
    queue = settings.LATHE_INFERENCE_QUEUE
    stale = timezone.now() - timedelta(seconds=settings.LATHE_INFERENCE_WORKER_TTL_S + 5)
    cases = {"none": lambda: None, "stale": lambda: alive_worker(queue, last_seen_at=stale),
             "stopped": lambda: alive_worker(queue, stopped_at=timezone.now()),
             "another queue's": lambda: alive_worker("another-queue")}
    for case, make in cases.items():
        InferenceWorker.objects.all().delete()
        make()
        for url, body in ((f"/api/v1/models/{world['upload'].pk}/predict", {"inputs": ["hello"]}),
                          (f"/api/v1/jobs/{world['job'].pk}/predict", {"inputs": ["hello"], "artifact": "model.zip"})):
            response = api.post(url, body, format="json")
            assert response.status_code == 503, (case, response.content)
            assert response.json()["error"]["code"] == "no_inference_worker"
            assert int(response["Retry-After"]) >= 1
    assert not InferenceRequest.objects.exists()


def test_a_worker_that_never_answers_times_out_and_the_request_expires(world, tenant_a, api_for, settings):
    settings.LATHE_INFERENCE_TIMEOUT_S = 1
    alive_worker(settings.LATHE_INFERENCE_QUEUE)  # seen just now, but nothing consumes the queue
    response = api_for(tenant_a.key()).post(f"/api/v1/models/{world['upload'].pk}/predict", {"inputs": ["x"]},
                                            format="json")
    assert response.status_code == 504 and response.json()["error"]["code"] == "inference_timeout"
    assert "1 s" in response.json()["error"]["message"]
    request = InferenceRequest.objects.get()
    # expired: a worker that takes the message later finds nothing to run; the texts are not kept
    assert request.state == RequestState.EXPIRED and request.payload == {} and request.finished_at
    assert not InferenceUsage.objects.exists()
    from serving.runner import answer

    assert answer(request_id=request.pk)["code"] == "not_claimed"
    request.refresh_from_db()
    assert request.state == RequestState.EXPIRED and not InferenceUsage.objects.exists()


def test_a_spent_allowance_is_a_402(world, tenant_a, api_for, settings):
    alive_worker(settings.LATHE_INFERENCE_QUEUE)
    now = timezone.now()
    InferenceUsage.objects.create(organization=tenant_a.organization, reference="inference-x", source_key="upload-1",
                                  device_class="cpu", started_at=now - timedelta(seconds=1), ended_at=now,
                                  seconds=10**7)  # far beyond the free plan's $2 at the cpu rate
    response = api_for(tenant_a.key()).post(f"/api/v1/models/{world['upload'].pk}/predict", {"inputs": ["x"]},
                                            format="json")
    assert response.status_code == 402 and response.json()["error"]["code"] == "allowance_used"
    assert not InferenceRequest.objects.exists()


LONG = "x" * 8001
BAD_BODIES = [
    ({}, "inputs"),
    ({"inputs": []}, "inputs"),
    ({"inputs": "hello"}, "inputs"),
    ({"inputs": ["ok"] * 33}, "inputs"),
    ({"inputs": [1]}, "inputs[0]"),
    ({"inputs": ["ok", None]}, "inputs[1]"),
    ({"inputs": ["ok", ""]}, "inputs[1]"),
    ({"inputs": ["a\u0000b"]}, "inputs[0]"),
    ({"inputs": [LONG]}, "inputs[0]"),
    ({"inputs": [["nested"]]}, "inputs[0]"),
    ({"inputs": [{"text": "a", "label": "b"}]}, "inputs[0].label"),
    ({"inputs": ["a"], "zzz": 1}, "zzz"),
    ({"inputs": ["a"], "max_new_tokens": 5}, "max_new_tokens"),  # a chat option for a classifier
    ({"inputs": ["a"], "messages": [{"role": "user", "content": "x"}]}, "messages"),
    ({"inputs": {"text": "a"}}, "inputs"),
]


@pytest.mark.parametrize("body, field", BAD_BODIES, ids=[f"{i}:{f}" for i, (_b, f) in enumerate(BAD_BODIES)])
def test_malformed_bodies_are_400_naming_the_field_and_write_nothing(world, tenant_a, api_for, settings, body, field):
    alive_worker(settings.LATHE_INFERENCE_QUEUE)  # a 400 comes before any worker is asked
    api = api_for(tenant_a.key())
    for url in (f"/api/v1/models/{world['upload'].pk}/predict", f"/api/v1/jobs/{world['job'].pk}/predict"):
        response = api.post(url, body, format="json")
        assert response.status_code == 400, (url, response.content)
        assert field in response.json()["error"]["fields"], (url, response.json())
    assert not InferenceRequest.objects.exists()


@pytest.mark.parametrize("raw", ['[1]', '"text"', "null", '{"inputs": ["a"], "inputs": 1e400}'])
def test_a_body_that_is_not_an_object_is_a_400(world, tenant_a, api_for, raw):
    response = api_for(tenant_a.key()).generic("POST", f"/api/v1/models/{world['upload'].pk}/predict", raw,
                                               content_type="application/json")
    assert response.status_code == 400 and not InferenceRequest.objects.exists()


def test_the_job_endpoint_names_what_is_wrong_with_the_model(world, tenant_a, api_for, settings):
    alive_worker(settings.LATHE_INFERENCE_QUEUE)
    api = api_for(tenant_a.key())
    job = world["job"]
    missing = api.post(f"/api/v1/jobs/{job.pk}/predict", {"inputs": ["a"], "artifact": "eval.json"}, format="json")
    assert missing.status_code == 404 and "model-onnx-int8.zip" in missing.json()["error"]["message"]
    for artifact in ("", "a\u0000b", 7, "x" * 101):
        bad = api.post(f"/api/v1/jobs/{job.pk}/predict", {"inputs": ["a"], "artifact": artifact}, format="json")
        assert bad.status_code == 400 and "artifact" in bad.json()["error"]["fields"], artifact
    not_ready = api.post(f"/api/v1/jobs/{world['queued'].pk}/predict", {"inputs": ["a"]}, format="json")
    assert not_ready.status_code == 400 and not_ready.json()["error"]["code"] == "model_not_ready"
    assert not InferenceRequest.objects.exists()


def test_another_organizations_models_are_not_found(world, tenant_b, api_for, settings):
    alive_worker(settings.LATHE_INFERENCE_QUEUE)
    api = api_for(tenant_b.key())
    for url in (f"/api/v1/models/{world['upload'].pk}/predict", f"/api/v1/jobs/{world['job'].pk}/predict"):
        response = api.post(url, {"inputs": ["a"]}, format="json")
        assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    assert not InferenceRequest.objects.exists()


def test_chat_completions_refuse_what_they_do_not_support_before_any_worker(world, tenant_a, api_for, settings):
    """Without a chat model: the refusals that need none (the model is checked after the parameters)."""
    api = api_for(tenant_a.key())
    messages = [{"role": "user", "content": "hi"}]
    for body, param, status in [
        ({"model": "ft:x:y::1", "messages": messages, "stream": True}, "stream", 400),
        ({"model": "ft:x:y::1", "messages": messages, "n": 3}, "n", 400),
        ({"model": "ft:x:y::1", "messages": messages, "logprobs": True}, "logprobs", 400),
        ({"model": "ft:x:y::1", "messages": messages, "zzz": 1}, "zzz", 400),
        ({"messages": messages}, "model", 400),
        ({"model": "ft:x:y::1"}, "messages", 400),
        ({"model": "ft:x:y::1", "messages": messages, "max_tokens": 4, "max_completion_tokens": 4}, "max_tokens", 400),
        ({"model": f"ft:x:y::{world['job'].pk}", "messages": messages}, "model", 404),  # a classifier job is no chat model
    ]:
        response = api.post("/v1/chat/completions", body, format="json")
        assert response.status_code == status, (body, response.content)
        assert response.json()["error"]["param"] == param, (body, response.json())
    response = api.generic("POST", "/v1/chat/completions", json.dumps([1]), content_type="application/json")
    assert response.status_code == 400
    assert not InferenceRequest.objects.exists()


def test_the_heartbeat_row_is_written_and_refreshed(settings):
    from serving.services import worker_beat, worker_stopped, workers_up

    snapshot = {"loaded": ["abc"], "loaded_bytes": 12, "evictions": 3}
    worker_beat(name="w@h", queue="q", device_class="cpu", device_count=1, pid=1, concurrency=2, snapshot=snapshot,
                starting=True)
    row = InferenceWorker.objects.get(name="w@h")
    assert (row.loaded, row.loaded_bytes, row.evictions, row.concurrency) == (["abc"], 12, 3, 2)
    assert workers_up(queue="q").exists()
    worker_stopped(name="w@h")
    assert not workers_up(queue="q").exists()
    # a beat that races the shutdown does not revive the row; a restarted process (starting) does
    worker_beat(name="w@h", queue="q", device_class="cpu", device_count=1, pid=1, concurrency=2,
                snapshot={"loaded": []}, starting=False)
    assert not workers_up(queue="q").exists() and InferenceWorker.objects.get(name="w@h").loaded == ["abc"]
    worker_beat(name="w@h", queue="q", device_class="cpu", device_count=1, pid=2, concurrency=2,
                snapshot={"loaded": []}, starting=True)
    assert workers_up(queue="q").get().loaded == []
    worker_beat(name="w@h", queue="q", device_class="cpu", device_count=1, pid=2, concurrency=2,
                snapshot={"loaded": ["def"]}, starting=False)
    assert workers_up(queue="q").get().loaded == ["def"]


def test_try_it_errors_are_shown_inline_on_the_dashboard(world, tenant_a, client, settings):
    client.force_login(tenant_a.owner)
    page = client.post(f"/o/{tenant_a.organization.slug}/models/{world['upload'].pk}/try", {"text": "hello"})
    assert page.status_code == 503
    assert 'data-testid="try-it-error"' in page.content.decode() and "No inference worker" in page.content.decode()
    detail = client.get(f"/o/{tenant_a.organization.slug}/jobs/{world['job'].pk}").content.decode()
    assert 'data-testid="try-it-form"' in detail and "model-onnx-int8.zip" in detail
    assert 'data-testid="try-it-form"' in client.get(
        f"/o/{tenant_a.organization.slug}/models/{world['upload'].pk}").content.decode()
    not_ready = client.post(f"/o/{tenant_a.organization.slug}/jobs/{world['queued'].pk}/try", {"text": "hello"})
    assert not_ready.status_code == 400 and "only a succeeded job" in not_ready.content.decode()
    assert not InferenceRequest.objects.exists()
