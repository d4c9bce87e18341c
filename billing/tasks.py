"""Thin Celery tasks: each takes an id or nothing and calls a service."""
from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.utils import timezone


@shared_task(acks_late=True)
def process_stripe_event(event_pk: int) -> str:
    from .webhooks import process

    return process(event_pk)


MAX_AUTOMATIC_RETRIES = 5


@shared_task
def sweep_stripe_events() -> int:
    """Events stored but never processed (a lost doorbell), and failed ones with
    retries left (a Stripe read that timed out): process them now."""
    from django.db.models import Q

    from .models import EventStatus, StripeEvent
    from .webhooks import process

    stale = StripeEvent.objects.filter(
        Q(status=EventStatus.RECEIVED) | Q(status=EventStatus.FAILED, attempts__lt=MAX_AUTOMATIC_RETRIES),
        received_at__lt=timezone.now() - timedelta(seconds=30)).order_by("pk")
    ids = list(stale.values_list("pk", flat=True)[:200])
    for pk in ids:
        process(pk)
    return len(ids)


@shared_task
def rollup_and_export() -> dict:
    from tenancy.models import Organization

    from .ledger import check_spend_alerts, export_pending, rollup_inference_usage, rollup_usage
    from .models import InferenceUsage, UsageSegment

    entries = rollup_usage() + rollup_inference_usage()
    # Alerts follow usage as it happens: organizations with new ledger rows or
    # with usage metered in the last minute (a long job still running).
    recent = UsageSegment.objects.filter(created_at__gte=timezone.now() - timedelta(seconds=90)).values_list(
        "organization_id", flat=True)
    recent = set(recent) | set(InferenceUsage.objects.filter(created_at__gte=timezone.now() - timedelta(seconds=90))
                               .values_list("organization_id", flat=True))
    for organization in Organization.objects.filter(pk__in={e.organization_id for e in entries} | set(recent)):
        check_spend_alerts(organization=organization)
    return {"rolled_up": len(entries), "exported": export_pending()}


@shared_task
def reconcile_closed_periods() -> int:
    from .ledger import reconcile_closed_periods as reconcile

    return len(reconcile())
