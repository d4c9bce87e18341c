"""Billing fixtures: the Stripe stand-in with the real SDK pointed at it,
signed webhook deliveries, and plans synced to the stand-in."""
from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest

from tests.jobs.conftest import dataset, fast_jobs, long_dataset, media, tiny_bert, tiny_bert_dir  # noqa: F401
from tests.stripe_standin import StripeStandIn, example

WEBHOOK_SECRET = "whsec_test_standin"


@pytest.fixture
def stripe_standin(settings):
    with StripeStandIn() as standin:
        settings.STRIPE_SECRET_KEY = "sk_test_standin"
        settings.STRIPE_API_BASE = standin.url
        settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
        settings.STRIPE_TIMEOUT_SECONDS = 0.5
        standin.state.slow_seconds = 1.5
        yield standin


@pytest.fixture
def synced_pro(stripe_standin, db):
    from billing.models import Plan
    from billing.plans import ensure_default_plans
    from billing.services import plan_sync

    ensure_default_plans()  # transactional tests flush the seeded rows
    plan = Plan.objects.get(slug="pro")
    plan_sync(plan=plan)
    plan.refresh_from_db()
    return plan


def signature(payload: bytes, *, secret: str = WEBHOOK_SECRET, timestamp: int | None = None) -> str:
    """Stripe's scheme: t=<unix>,v1=HMAC-SHA256(secret, "<t>.<body>")."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def stripe_event(event_type: str, obj: dict, *, created: int | None = None, event_id: str | None = None) -> dict:
    return example("event", id=event_id or f"evt_{time.time_ns()}", type=event_type, created=created or int(time.time()),
                   data={"object": obj, "previous_attributes": None}, livemode=False)


def deliver(client, event: dict, **signing) -> object:
    payload = json.dumps(event).encode()
    return client.post("/stripe/webhook", data=payload, content_type="application/json",
                       HTTP_STRIPE_SIGNATURE=signature(payload, **signing))
