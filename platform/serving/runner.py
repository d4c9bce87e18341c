"""The inference worker's side of a request (serving.tasks.run_inference calls `answer`): claim the row
(PostgreSQL decides: a request the caller stopped waiting for is expired and never run), find the model
(the archive unpacked once into the bounded disk cache, jobs.model_sources.unpacked; loaded once into the
process's LRU, workers.serving.engine), answer, then in one transaction finish the row and meter its worker
time (billing.metering.record_inference). The answer goes back through Celery's result backend."""
from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing import metering
from core.errors import ApplicationError

from .models import InferenceRequest, RequestKind, RequestState

logger = logging.getLogger(__name__)

_engine = None
_engine_lock = threading.Lock()
_identity: dict = {}


def engine():
    """The process's one engine (its threads share the loaded models)."""
    global _engine
    with _engine_lock:
        if _engine is None:
            from workers.serving.engine import LocalEngine

            _engine = LocalEngine(max_models=settings.LATHE_INFERENCE_MAX_MODELS,
                                  max_bytes=settings.LATHE_INFERENCE_MAX_BYTES,
                                  threads=settings.LATHE_INFERENCE_THREADS or None)
        return _engine


def identity() -> dict:
    """This worker's name and device class (as billing names it), read once."""
    if "device_class" not in _identity:
        from workers.devices import device_class

        klass, count = device_class()
        _identity.update(device_class=klass, device_count=count)
        _identity.setdefault("name", f"inference-{threading.get_native_id()}")
    return _identity


def _source(request: InferenceRequest):
    from jobs import model_sources

    if request.uploaded_model_id is not None:
        source = model_sources.source_get(organization=request.organization, uploaded_model_id=request.uploaded_model_id)
    elif request.job_id is not None:
        source = model_sources.source_get(organization=request.organization, job_id=request.job_id,
                                          artifact=request.artifact or None)
    else:
        raise ApplicationError("The model was deleted.", code="model_gone", status=404)
    if source.sha256 != request.sha256:
        raise ApplicationError("The model changed while the request waited; send it again.", code="model_gone", status=409)
    return source


def _fail(request_id: int, *, code: str, message: str) -> dict:
    InferenceRequest.objects.filter(pk=request_id, state=RequestState.RUNNING).update(
        state=RequestState.FAILED, finished_at=timezone.now(), payload={}, error_code=code, error_message=message[:2000])
    return {"ok": False, "code": code, "message": message}


def answer(*, request_id: int) -> dict:
    me = identity()
    started_at, started = timezone.now(), time.perf_counter()
    # Read, then claim: two round trips on the hot path (the organization is read only for a cold start).
    # A request's payload does not change while it is queued; the claim alone decides who runs it.
    request = InferenceRequest.objects.filter(pk=request_id).first()
    claimed = request is not None and InferenceRequest.objects.filter(pk=request_id, state=RequestState.QUEUED).update(
        state=RequestState.RUNNING, started_at=started_at, worker=me["name"][:200], device_class=me["device_class"])
    if not claimed:  # expired (the caller gave up) or already taken: nothing to run, nothing to bill
        state = InferenceRequest.objects.filter(pk=request_id).values_list("state", flat=True).first()
        return {"ok": False, "code": "not_claimed", "message": f"The request is {state or 'gone'}; it was not run."}
    payload = request.payload or {}
    try:
        from jobs.model_sources import unpacked

        # The web checked the model a moment ago and named it by sha256: a warm model answers at once; only a
        # cold start looks the archive up again (still the organization's, same content) and unpacks it.
        key = request.sha256
        locate = lambda: str(unpacked(_source(request)))  # noqa: E731
        if request.kind == RequestKind.CHAT:
            done = engine().reply(key=key, locate=locate, conversations=[payload["messages"]],
                                  max_new_tokens=payload["max_new_tokens"], temperature=payload["temperature"],
                                  top_p=payload["top_p"], seed=payload.get("seed"))
            outputs = [{"content": r.content, "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
                        "finish_reason": r.finish_reason} for r in done.outputs]
        else:
            done = engine().classify(key=key, locate=locate, inputs=payload["inputs"],
                                     batch_size=max(1, len(payload["inputs"])))
            outputs = [{"label": c.label, "score": c.score, "scores": c.scores} for c in done.outputs]
    except ApplicationError as error:
        return _fail(request_id, code=error.code, message=error.message)
    except Exception as error:  # a model that does not load or answer: the caller is told, the worker goes on
        logger.warning("Inference request %s failed", request_id, exc_info=True)
        return _fail(request_id, code="inference_failed", message=f"The model could not answer: {type(error).__name__}: "
                                                                    f"{str(error)[:300]}")
    seconds = time.perf_counter() - started
    ended_at = started_at + timedelta(seconds=seconds)
    with transaction.atomic():
        finished = InferenceRequest.objects.filter(pk=request_id, state=RequestState.RUNNING).update(
            state=RequestState.SUCCEEDED, finished_at=ended_at, payload={}, warm=done.warm,
            load_seconds=round(done.load_seconds, 3), worker_seconds=round(seconds, 3), variant=done.variant)
        if finished:
            metering.record_inference(organization_id=request.organization_id, reference=f"inference-{request_id}",
                                      source_key=request.source_key, device_class=me["device_class"],
                                      device_count=me["device_count"], started_at=started_at, ended_at=ended_at)
    return {"ok": True, "warm": done.warm, "load_ms": round(1000 * done.load_seconds, 3),
            "worker_ms": round(1000 * seconds, 3), "variant": done.variant, "worker": me["name"],
            "device_class": me["device_class"], "outputs": outputs}
