"""Thin Celery task: the inference worker answers one request by id (serving/runner.py)."""
from __future__ import annotations

from celery import shared_task


@shared_task(name="serving.tasks.run_inference", acks_late=False)
def run_inference(request_id: int) -> dict:
    # Acked on receipt: a request is answered once or not at all (the caller waits seconds, not a redelivery).
    from .runner import answer

    return answer(request_id=request_id)
