"""Stripe webhooks: verify the raw body's signature (stale and future
timestamps refused), store the event under its unique id, answer at once, and
process it off the request path. Handlers are idempotent and ignore events
older than the state they would overwrite (Stripe delivers out of order)."""
from __future__ import annotations

import logging
import re
import time
from datetime import datetime, timezone as dt_timezone

from celery import current_app
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from audit.models import AuditAction
from audit.services import audit_record
from core.errors import ApplicationError
from core.parsers import JSONBodyError, parse_json

from . import gateway
from .models import BillingAccount, EventStatus, Invoice, Plan, StripeEvent, SubscriptionStatus

logger = logging.getLogger(__name__)
HANDLED = ("checkout.session.completed", "customer.subscription.created", "customer.subscription.updated",
           "customer.subscription.deleted", "invoice.paid", "invoice.payment_failed", "invoice.finalized")


# A Unix time in seconds: at most 12 ASCII digits (year 33658), so int() never sees
# a superscript "²" or 5,000 digits.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
# Stripe's `created` within what a datetime holds, comfortably: 1970 to 2100.
_CREATED_RANGE = (0, 4_102_444_800)


class SignatureError(ApplicationError):
    def __init__(self, message: str):
        super().__init__(message, code="invalid_signature", status=400)


class EventError(ApplicationError):
    """A signed body that is not an event we can store (nothing is kept)."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message, code="invalid_event", status=400, fields={field: [message]} if field else None)


def verify(payload: bytes, header: str, *, secret: str | None = None, now: float | None = None) -> dict:
    """The event, if `header` signs `payload` with our secret within the tolerance
    either way (Stripe's SDK checks the signature but refuses only stale timestamps)."""
    secret = secret if secret is not None else settings.STRIPE_WEBHOOK_SECRET
    if not secret:
        raise ApplicationError("Stripe webhooks are not configured (STRIPE_WEBHOOK_SECRET).", code="billing_not_configured",
                               status=400)
    parts = [p.split("=", 1) for p in (header or "").split(",") if "=" in p]
    timestamps = [v for k, v in parts if k == "t"]
    signatures = [v for k, v in parts if k == "v1"]
    if not timestamps or not signatures or not _TIMESTAMP.fullmatch(timestamps[0]):
        raise SignatureError("Missing or malformed Stripe-Signature header (expected t=<unix seconds>,v1=<hex>).")
    timestamp = int(timestamps[0])
    now = time.time() if now is None else now
    tolerance = settings.STRIPE_WEBHOOK_TOLERANCE_SECONDS
    if timestamp < now - tolerance:
        raise SignatureError(f"The signature's timestamp is more than {tolerance} s old (a replay?).")
    if timestamp > now + tolerance:
        raise SignatureError(f"The signature's timestamp is more than {tolerance} s in the future.")
    if not gateway.signature_matches(payload, header, secret):
        raise SignatureError("The signature does not match the body and the webhook secret.")
    try:
        event = parse_json(payload, what="The body")
    except JSONBodyError as error:  # depth, out-of-range numbers, NUL characters
        raise EventError(error.message) from None
    check_event(event)
    return event


def check_event(event) -> None:
    """What receive() stores must fit its columns: a 400 naming the field otherwise."""
    if not isinstance(event, dict):
        raise EventError("The body is not a Stripe event (a JSON object).")
    for field in ("id", "type"):
        value = event.get(field)
        limit = StripeEvent._meta.get_field("stripe_id" if field == "id" else field).max_length
        if not isinstance(value, str) or not value:
            raise EventError(f"The event has no {field} string.", field=field)
        if len(value) > limit:
            raise EventError(f"The event's {field} is {len(value)} characters; at most {limit}.", field=field)
    if not event["id"].startswith("evt_"):
        raise EventError("The event's id does not start with evt_: not a Stripe event.", field="id")
    created = event.get("created")
    if created is not None and (isinstance(created, bool) or not isinstance(created, int)
                                or not _CREATED_RANGE[0] <= created <= _CREATED_RANGE[1]):
        raise EventError(f"The event's created must be a Unix time in seconds between {_CREATED_RANGE[0]} and "
                         f"{_CREATED_RANGE[1]}.", field="created")
    if not isinstance(event.get("livemode", False), bool):
        raise EventError("The event's livemode must be true or false.", field="livemode")
    data = event.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise EventError("The event's data.object must be an object.", field="data.object")


def receive(event: dict) -> tuple[StripeEvent, bool]:
    """Store the event (unique id); (row, created). Processing is queued on commit."""
    try:
        with transaction.atomic():
            row = StripeEvent.objects.create(
                stripe_id=event["id"], type=event["type"], livemode=bool(event.get("livemode")), payload=event,
                created=datetime.fromtimestamp(event.get("created") or int(time.time()), tz=dt_timezone.utc))
            transaction.on_commit(lambda: _ring(row.pk))
    except IntegrityError:  # delivered again (or concurrently): the first copy is the one processed
        return StripeEvent.objects.get(stripe_id=event["id"]), False
    return row, True


def _ring(pk: int) -> None:
    """Queue the processing; a broker hiccup must not turn Stripe's delivery into
    a 500 (the event is stored; the sweeper processes it). Rung by the task's
    name: the thin task imports this module, never the reverse."""
    try:
        current_app.send_task("billing.tasks.process_stripe_event", args=[pk])
    except Exception:
        logger.exception("Could not queue Stripe event %s; the sweeper will process it", pk)


def process(event_pk: int) -> str:
    """Run the handler once: the row is locked and its status checked inside the
    same transaction as the handler's writes."""
    try:
        with transaction.atomic():
            row = StripeEvent.objects.select_for_update().filter(pk=event_pk).first()
            if row is None or row.status in (EventStatus.PROCESSED, EventStatus.IGNORED):
                return row.status if row else "missing"
            handler = HANDLERS.get(row.type)
            note = handler(row) if handler else f"{row.type}: not handled"
            status = EventStatus.PROCESSED if handler and not (note or "").startswith("ignored") else EventStatus.IGNORED
            StripeEvent.objects.filter(pk=row.pk).update(status=status, note=note or "", processed_at=timezone.now(),
                                                         attempts=row.attempts + 1)
            return status
    except Exception as exc:  # recorded for operators, who can re-process it from the admin
        logger.exception("Stripe event %s failed", event_pk)
        StripeEvent.objects.filter(pk=event_pk).update(status=EventStatus.FAILED, note=f"{type(exc).__name__}: {exc}"[:5000],
                                                       attempts=F("attempts") + 1)
        return EventStatus.FAILED


# --- handlers ----------------------------------------------------------------------------

def _ts(value) -> datetime | None:
    return datetime.fromtimestamp(int(value), tz=dt_timezone.utc) if value else None


def _account_by_customer(customer_id: str | None) -> BillingAccount | None:
    if not customer_id:
        return None
    return BillingAccount.objects.select_for_update().filter(stripe_customer_id=customer_id).first()


def _plan_for_subscription(subscription: dict) -> Plan | None:
    prices = [item.get("price", {}).get("id") for item in subscription.get("items", {}).get("data", [])]
    plan = Plan.objects.filter(stripe_base_price_id__in=[p for p in prices if p]).first() or \
        Plan.objects.filter(stripe_metered_price_id__in=[p for p in prices if p]).first()
    if plan is None and subscription.get("metadata", {}).get("lathe_plan"):
        plan = Plan.objects.filter(slug=subscription["metadata"]["lathe_plan"]).first()
    return plan


def apply_subscription(account: BillingAccount, subscription: dict, *, event_at: datetime, deleted: bool = False) -> str:
    if account.subscription_event_at and event_at < account.subscription_event_at:
        return f"ignored: older ({event_at:%H:%M:%S}) than the state already applied ({account.subscription_event_at:%H:%M:%S})"
    if account.stripe_subscription_id and subscription["id"] != account.stripe_subscription_id and deleted:
        return "ignored: a subscription this organization no longer has"
    from .services import default_plan

    status = SubscriptionStatus.CANCELED if deleted else subscription.get("status", "active")
    if status not in SubscriptionStatus.values:
        status = SubscriptionStatus.INCOMPLETE
    items = subscription.get("items", {}).get("data", [])
    plan = default_plan() if deleted else (_plan_for_subscription(subscription) or account.plan)
    if plan.pk != account.plan_id:
        audit_record(organization=account.organization, action=AuditAction.PLAN_CHANGED, target=plan,
                     target_label=plan.name, data={"from": account.plan.slug, "to": plan.slug, "status": status,
                                                   "stripe_subscription": subscription["id"]})
    BillingAccount.objects.filter(pk=account.pk).update(
        stripe_subscription_id=subscription["id"], status=status, plan=plan,
        current_period_start=_ts(items[0].get("current_period_start")) if items else None,
        current_period_end=_ts(items[0].get("current_period_end")) if items else None,
        cancel_at_period_end=bool(subscription.get("cancel_at_period_end")), subscription_event_at=event_at,
        updated_at=timezone.now())
    return f"{account.organization_id}: {plan.slug} {status}"


def on_checkout_completed(row: StripeEvent) -> str:
    session = row.payload["data"]["object"]
    org_id = session.get("client_reference_id") or session.get("metadata", {}).get("lathe_organization_id")
    account = BillingAccount.objects.select_for_update().filter(organization_id=org_id).first() if org_id else None
    if account is None:
        return f"ignored: no organization {org_id!r}"
    if account.stripe_customer_id and session.get("customer") and account.stripe_customer_id != session["customer"]:
        return "ignored: the session's customer is not this organization's"
    BillingAccount.objects.filter(pk=account.pk).update(stripe_customer_id=session.get("customer") or account.stripe_customer_id,
                                                        stripe_subscription_id=session.get("subscription") or "")
    account.refresh_from_db()
    if session.get("subscription"):
        # The session's event says nothing of the subscription's state: read it now.
        subscription = gateway.retrieve_subscription(session["subscription"])
        return apply_subscription(account, subscription.to_dict(), event_at=row.created)
    return f"{org_id}: customer linked"


def on_subscription(row: StripeEvent) -> str:
    subscription = row.payload["data"]["object"]
    account = _account_by_customer(subscription.get("customer"))
    if account is None:
        return f"ignored: unknown customer {subscription.get('customer')}"
    return apply_subscription(account, subscription, event_at=row.created, deleted=row.type.endswith(".deleted"))


def on_invoice(row: StripeEvent) -> str:
    invoice = row.payload["data"]["object"]
    account = _account_by_customer(invoice.get("customer"))
    if account is None:
        return f"ignored: unknown customer {invoice.get('customer')}"
    existing = Invoice.objects.select_for_update().filter(stripe_invoice_id=invoice["id"]).first()
    if existing and existing.updated_from_event_at > row.created:
        note = "invoice: older event, kept the newer state"
    else:
        Invoice.objects.update_or_create(stripe_invoice_id=invoice["id"], defaults={
            "organization_id": account.organization_id, "number": invoice.get("number") or "",
            "status": invoice.get("status") or "", "currency": invoice.get("currency") or "usd",
            "amount_due_cents": invoice.get("amount_due") or 0, "amount_paid_cents": invoice.get("amount_paid") or 0,
            "hosted_invoice_url": invoice.get("hosted_invoice_url") or "", "invoice_pdf": invoice.get("invoice_pdf") or "",
            "period_start": _ts(invoice.get("period_start")), "period_end": _ts(invoice.get("period_end")),
            "stripe_created": _ts(invoice.get("created")) or row.created, "updated_from_event_at": row.created})
        note = f"invoice {invoice['id']} {invoice.get('status')}"
    newer = not account.subscription_event_at or row.created >= account.subscription_event_at
    if row.type == "invoice.payment_failed" and newer and account.status != SubscriptionStatus.CANCELED:
        BillingAccount.objects.filter(pk=account.pk).update(status=SubscriptionStatus.PAST_DUE, subscription_event_at=row.created)
        note += "; organization past due"
    if row.type == "invoice.paid" and newer and account.status in (SubscriptionStatus.PAST_DUE, SubscriptionStatus.UNPAID):
        BillingAccount.objects.filter(pk=account.pk).update(status=SubscriptionStatus.ACTIVE, subscription_event_at=row.created)
        note += "; organization active again"
    return note


HANDLERS = {
    "checkout.session.completed": on_checkout_completed,
    "customer.subscription.created": on_subscription,
    "customer.subscription.updated": on_subscription,
    "customer.subscription.deleted": on_subscription,
    "invoice.paid": on_invoice,
    "invoice.payment_failed": on_invoice,
    "invoice.finalized": on_invoice,
}
