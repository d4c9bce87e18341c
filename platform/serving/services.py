"""Try-it: a synchronous answer from a model, computed on an inference worker, never in the web process.

    predict / chat  → checks (the model is the caller's: 404; the body: 400 naming the field; billing: 402;
                      an inference worker seen lately: else 503 `no_inference_worker` with Retry-After, at once)
                    → an InferenceRequest row `queued` (PostgreSQL is the truth) → "serving.tasks.run_inference"
                      rung by name on LATHE_INFERENCE_QUEUE with the row's task id
                    → wait for the answer in Celery's result backend, up to LATHE_INFERENCE_TIMEOUT_S; on
                      time-out the row is expired if no worker took it yet (so none will) and the caller gets a
                      504 `inference_timeout`.
The worker (serving/runner.py) claims the row, answers, and in one transaction finishes it and meters its
worker time for billing."""
from __future__ import annotations

import time
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from core.errors import ApplicationError, field_error

from . import validation
from .models import InferenceRequest, InferenceWorker, RequestKind, RequestState, Surface

CLASSIFIER, CHAT = "classifier", "chat"  # jobs.model_sources' families


class ServiceUnavailable(ApplicationError):
    status_code = 503

    def __init__(self, message: str, *, code: str, retry_after: int):
        super().__init__(message, code=code)
        self.headers = {"Retry-After": str(retry_after)}


class InferenceTimeout(ApplicationError):
    status_code = 504
    default_code = "inference_timeout"


# --- the workers' side of the heartbeat ---------------------------------------------------------

def worker_beat(*, name: str, queue: str, device_class: str, device_count: int, pid: int, concurrency: int,
                snapshot: dict, starting: bool = False) -> None:
    now = timezone.now()
    fields = dict(queue=queue, device_class=device_class, device_count=device_count, pid=pid, concurrency=concurrency,
                  max_models=settings.LATHE_INFERENCE_MAX_MODELS, max_bytes=settings.LATHE_INFERENCE_MAX_BYTES,
                  loaded=list(snapshot.get("loaded") or []), loaded_bytes=int(snapshot.get("loaded_bytes") or 0),
                  evictions=int(snapshot.get("evictions") or 0), last_seen_at=now)
    rows = InferenceWorker.objects.filter(name=name[:200])
    if starting:
        # A (re)started process under the same name revives its row; later beats never do, so a beat that
        # races the shutdown's worker_stopped cannot make a stopped worker look up again.
        fields.update(started_at=now, stopped_at=None)
        updated = rows.update(**fields)
    else:
        updated = rows.filter(stopped_at__isnull=True).update(**fields)
    if not updated and not rows.exists():
        InferenceWorker.objects.update_or_create(name=name[:200], defaults={**fields, "started_at": now,
                                                                            "stopped_at": None})


def worker_stopped(*, name: str) -> None:
    InferenceWorker.objects.filter(name=name[:200]).update(stopped_at=timezone.now())


def workers_up(*, queue: str | None = None):
    cutoff = timezone.now() - timedelta(seconds=settings.LATHE_INFERENCE_WORKER_TTL_S)
    return InferenceWorker.objects.filter(queue=queue or settings.LATHE_INFERENCE_QUEUE, stopped_at__isnull=True,
                                          last_seen_at__gte=cutoff)


def _require_worker() -> None:
    if not workers_up().exists():
        raise ServiceUnavailable(
            "No inference worker is running, so the model cannot answer now. Operators: start one "
            "(Procfile `inference`: celery -A config worker --pool=threads --queues="
            f"{settings.LATHE_INFERENCE_QUEUE}); try again shortly.", code="no_inference_worker",
            retry_after=max(1, int(settings.LATHE_INFERENCE_HEARTBEAT_S)))


# --- requests --------------------------------------------------------------------------------------

def _check_billing(organization, check) -> None:
    """402 when the subscription is blocked or the cap / allowance is spent (billing.services.check_can_infer).
    A pass is remembered for LATHE_INFERENCE_BILLING_CHECK_S (5 s) per organization, so a stream of try-it calls
    does not re-add the period's ledger for each; a refusal never is (the next call checks again)."""
    from django.core.cache import cache

    seconds = float(getattr(settings, "LATHE_INFERENCE_BILLING_CHECK_S", 5))
    key = f"lathe:serving:billing-ok:{organization.pk}"
    if seconds > 0 and cache.get(key):
        return
    check(organization=organization)
    if seconds > 0:
        cache.set(key, True, timeout=seconds)


def _model_of(source) -> dict:
    return {"key": source.key, "name": source.name, "variant": source.variant, "family": source.family,
            "reference": source.reference()}


def _run(*, organization, source, kind: str, payload: dict, input_count: int, surface: str) -> tuple[dict, float]:
    """Send the request to a worker and wait. (the worker's answer, the milliseconds waited)."""
    from celery import current_app
    from celery.exceptions import TimeoutError as CeleryTimeout

    from billing.services import check_can_infer

    started = time.perf_counter()
    _check_billing(organization, check_can_infer)
    _require_worker()
    request = InferenceRequest.objects.create(
        organization=organization, job_id=source.job_id, artifact=source.artifact or "",
        uploaded_model_id=source.uploaded_model_id, source_key=source.key, sha256=source.sha256, variant=source.variant,
        kind=kind, surface=surface, payload=payload, input_count=input_count)
    timeout = float(settings.LATHE_INFERENCE_TIMEOUT_S)
    result = current_app.send_task("serving.tasks.run_inference", args=[request.pk], task_id=str(request.task_id),
                                   queue=settings.LATHE_INFERENCE_QUEUE, expires=timeout + 5)
    try:
        answer = result.get(timeout=timeout, interval=0.005, propagate=False)
    except CeleryTimeout:
        expired = InferenceRequest.objects.filter(pk=request.pk, state=RequestState.QUEUED).update(
            state=RequestState.EXPIRED, finished_at=timezone.now(), payload={}, error_code="inference_timeout")
        where = ("no inference worker took it (they are all busy, or the broker is slow)" if expired
                 else "the worker is still computing it")
        raise InferenceTimeout(f"No answer within {timeout:g} s: {where}. Try again, with fewer inputs or a shorter "
                               "reply (max_new_tokens), or ask the operators for more inference workers.") from None
    finally:
        waited_ms = 1000 * (time.perf_counter() - started)
    try:
        result.forget()
    except Exception:  # a backend without forget: the result expires by itself (CELERY_RESULT_EXPIRES)
        pass
    if not isinstance(answer, dict):  # the task itself raised (a bug, not the model): logged on the worker
        InferenceRequest.objects.filter(pk=request.pk, state__in=[RequestState.QUEUED, RequestState.RUNNING]).update(
            state=RequestState.FAILED, finished_at=timezone.now(), payload={}, error_code="inference_failed")
        raise ApplicationError("The inference worker failed on this request; it has been logged.",
                               code="inference_failed", status=502)
    if not answer.get("ok"):
        code = answer.get("code") or "inference_failed"
        status = {"model_gone": 404, "not_claimed": 504}.get(code, 502)
        raise ApplicationError(answer.get("message") or "The model could not answer.", code=code, status=status)
    answer["request_id"] = request.pk
    return answer, waited_ms


def predict(*, organization, source, inputs, surface: str = Surface.API) -> dict:
    """Classify up to LATHE_INFERENCE_MAX_INPUTS texts with a classifier: per input the label, its probability
    and every label's, plus latency, the model and whether it was warm."""
    if source.family != CLASSIFIER:
        raise field_error("inputs", "This is a chat model: send messages (and max_new_tokens) instead "
                                               "of inputs.", code="wrong_model_kind")
    rows = validation.classifier_inputs(inputs, task=source.task)
    answer, waited_ms = _run(organization=organization, source=source, kind=RequestKind.CLASSIFY,
                             payload={"inputs": rows}, input_count=len(rows), surface=surface)
    results = []
    for output in answer["outputs"]:
        ranked = sorted(output["scores"].items(), key=lambda kv: -kv[1])
        results.append({"label": output["label"], "score": round(output["score"], 6),
                        "scores": [{"label": label, "score": round(p, 6)} for label, p in ranked]})
    return {"object": "predictions", "id": answer["request_id"], "model": {**_model_of(source), "variant": answer.get("variant") or source.variant},
            "warm": answer["warm"], "latency_ms": round(waited_ms, 3), "worker_ms": answer["worker_ms"],
            "load_ms": answer["load_ms"], "device_class": answer.get("device_class", ""), "results": results}


def chat(*, organization, source, messages, max_new_tokens=None, temperature=None, top_p=None, seed=None,
         surface: str = Surface.API, names: dict | None = None) -> dict:
    """One reply of a chat model to a conversation (OpenAI-style messages, validated), with token counts."""
    names = names or {}
    if source.family != CHAT:
        raise field_error(names.get("messages", "messages"), "This model is a classifier: send inputs "
                                     "(texts to classify) instead of messages.", code="wrong_model_kind")
    conversation = validation.chat_messages(messages, field=names.get("messages", "messages"))
    options = validation.generation(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed,
                                    names=names)
    answer, waited_ms = _run(organization=organization, source=source, kind=RequestKind.CHAT,
                             payload={"messages": conversation, **options}, input_count=1, surface=surface)
    reply = answer["outputs"][0]
    return {"object": "chat.reply", "id": answer["request_id"], "model": {**_model_of(source), "variant": answer.get("variant") or source.variant},
            "warm": answer["warm"], "latency_ms": round(waited_ms, 3), "worker_ms": answer["worker_ms"],
            "load_ms": answer["load_ms"], "device_class": answer.get("device_class", ""),
            "reply": {"role": "assistant", "content": reply["content"]}, "finish_reason": reply["finish_reason"],
            "usage": {"prompt_tokens": reply["prompt_tokens"], "completion_tokens": reply["completion_tokens"],
                      "total_tokens": reply["prompt_tokens"] + reply["completion_tokens"]}}
