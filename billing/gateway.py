"""Every call to Stripe goes through here (the official SDK's StripeClient).
Idempotency keys are derived from our own rows, so a retry from any process
reuses them; nothing else in the project imports `stripe`."""
from __future__ import annotations

import hashlib
import logging
from datetime import datetime

import stripe
from django.conf import settings

from core.errors import ApplicationError

logger = logging.getLogger(__name__)
MICROS_UNIT_AMOUNT_CENTS = "0.0001"  # one meter unit = one micro-dollar = 0.0001 cent


class BillingNotConfigured(ApplicationError):
    def __init__(self):
        super().__init__("Billing is not configured on this Lathe installation (no Stripe keys); paid plans are "
                         "unavailable. Usage, limits, quotes and caps work without it.", code="billing_not_configured",
                         status=409)


class StripeUnavailable(ApplicationError):
    def __init__(self, detail: str):
        super().__init__(f"Stripe could not be reached or refused the request: {detail}", code="stripe_unavailable", status=503)


def enabled() -> bool:
    return bool(settings.STRIPE_SECRET_KEY)


def client() -> stripe.StripeClient:
    if not enabled():
        raise BillingNotConfigured()
    base = settings.STRIPE_API_BASE
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY,
        base_addresses={"api": base, "meter_events": base} if base else None,
        http_client=stripe.RequestsClient(timeout=settings.STRIPE_TIMEOUT_SECONDS),
        max_network_retries=0,  # our outbox and sweepers retry, with the same idempotency keys
    )


def _key(*parts) -> str:
    return "lathe-" + hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:40]


# --- customers, checkout, portal --------------------------------------------------

def create_customer(*, organization_id: int, name: str, email: str) -> str:
    customer = client().v1.customers.create(
        {"name": name, "email": email, "metadata": {"lathe_organization_id": str(organization_id)}},
        {"idempotency_key": _key("customer", organization_id)})
    return customer.id


def create_checkout_session(*, customer_id: str, organization_id: int, plan, success_url: str, cancel_url: str) -> str:
    line_items = [{"price": plan.stripe_base_price_id, "quantity": 1}] if plan.stripe_base_price_id else []
    if plan.stripe_metered_price_id:
        line_items.append({"price": plan.stripe_metered_price_id})  # metered: no quantity
    session = client().v1.checkout.sessions.create({
        "mode": "subscription", "customer": customer_id, "client_reference_id": str(organization_id),
        "line_items": line_items, "success_url": success_url, "cancel_url": cancel_url,
        "metadata": {"lathe_organization_id": str(organization_id), "lathe_plan": plan.slug},
        "subscription_data": {"metadata": {"lathe_organization_id": str(organization_id), "lathe_plan": plan.slug}},
    })
    return session.url


def create_portal_session(*, customer_id: str, return_url: str) -> str:
    return client().v1.billing_portal.sessions.create({"customer": customer_id, "return_url": return_url}).url


def retrieve_subscription(subscription_id: str):
    return client().v1.subscriptions.retrieve(subscription_id)


# --- plans -------------------------------------------------------------------------

def _price_by_lookup_key(api, lookup_key: str):
    found = api.v1.prices.list({"lookup_keys": [lookup_key], "limit": 1})
    return found.data[0] if found.data else None


def sync_plan(plan) -> dict:
    """Product, licensed base price, Billing Meter and graduated metered price
    (first tier: the included compute at zero). Idempotent: existing objects are
    found by id, lookup key or event name; a changed price gets a new one."""
    api = client()
    product_id = f"lathe_plan_{plan.slug}"
    try:
        product = api.v1.products.retrieve(product_id)
        api.v1.products.update(product_id, {"name": f"Lathe {plan.name}", "active": plan.is_active})
    except stripe.InvalidRequestError:
        product = api.v1.products.create({"id": product_id, "name": f"Lathe {plan.name}",
                                          "metadata": {"lathe_plan": plan.slug}},
                                         {"idempotency_key": _key("product", plan.slug)})
    result = {"product": product.id}
    base_key = f"lathe_{plan.slug}_base_{plan.currency}_{plan.monthly_price_cents}"
    base = _price_by_lookup_key(api, base_key)
    if base is None:
        base = api.v1.prices.create({"product": product.id, "currency": plan.currency, "unit_amount": plan.monthly_price_cents,
                                     "recurring": {"interval": "month", "usage_type": "licensed"}, "lookup_key": base_key},
                                    {"idempotency_key": _key("price", base_key)})
    result["base_price"] = base.id
    event_name = f"lathe_compute_{plan.slug}"
    meter = next((m for m in api.v1.billing.meters.list({"limit": 100}).data if m.event_name == event_name), None)
    if meter is None:
        meter = api.v1.billing.meters.create({
            "display_name": f"Lathe compute ({plan.name}), micro-dollars", "event_name": event_name,
            "default_aggregation": {"formula": "sum"},
            "customer_mapping": {"type": "by_id", "event_payload_key": "stripe_customer_id"},
            "value_settings": {"event_payload_key": "value"}}, {"idempotency_key": _key("meter", event_name)})
    result.update(meter=meter.id, event_name=event_name)
    included = plan.included_compute_cents * 10_000
    metered_key = f"lathe_{plan.slug}_compute_{plan.currency}_{included}"
    metered = _price_by_lookup_key(api, metered_key)
    if metered is None:
        tiers = ([{"up_to": included, "unit_amount_decimal": "0"}] if included else []) + [
            {"up_to": "inf", "unit_amount_decimal": MICROS_UNIT_AMOUNT_CENTS}]
        metered = api.v1.prices.create({
            "product": product.id, "currency": plan.currency, "billing_scheme": "tiered", "tiers_mode": "graduated",
            "tiers": tiers, "recurring": {"interval": "month", "usage_type": "metered", "meter": meter.id},
            "lookup_key": metered_key}, {"idempotency_key": _key("price", metered_key)})
    result["metered_price"] = metered.id
    return result


# --- meters ---------------------------------------------------------------------------

class MeterEventResult:
    SENT, DUPLICATE = "sent", "duplicate"


def send_meter_event(*, identifier: str, event_name: str, customer_id: str, value: int, timestamp: datetime) -> str:
    """SENT, or DUPLICATE when Stripe already has this identifier (delivered
    before: a lost answer or a crash before we marked it). Network errors raise."""
    try:
        client().v1.billing.meter_events.create(
            {"event_name": event_name, "identifier": identifier, "timestamp": int(timestamp.timestamp()),
             "payload": {"stripe_customer_id": customer_id, "value": str(value)}},
            {"idempotency_key": identifier})
    except stripe.InvalidRequestError as exc:
        if "already exists" in (exc.user_message or str(exc)) and "identifier" in (exc.user_message or str(exc)):
            return MeterEventResult.DUPLICATE
        raise
    return MeterEventResult.SENT


def meter_total(*, meter_id: str, customer_id: str, start: datetime, end: datetime) -> int:
    """Stripe's aggregated value for the customer over [start, end) (whole minutes)."""
    start_ts, end_ts = int(start.timestamp()) // 60 * 60, -(-int(end.timestamp()) // 60) * 60
    summaries = client().v1.billing.meters.event_summaries.list(
        meter_id, {"customer": customer_id, "start_time": start_ts, "end_time": end_ts, "limit": 100})
    return int(sum(float(s.aggregated_value) for s in summaries.auto_paging_iter()))


# --- webhooks ------------------------------------------------------------------------------

def signature_matches(payload: bytes, header: str, secret: str) -> bool:
    """Stripe's own check of the `Stripe-Signature` HMAC over the raw body (the
    timestamp window is checked by the caller, both ways)."""
    try:
        stripe.WebhookSignature.verify_header(payload, header, secret, tolerance=None)
    except (stripe.SignatureVerificationError, UnicodeDecodeError):
        return False
    return True
