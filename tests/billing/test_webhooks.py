"""Webhooks with Stripe's real signing scheme and Stripe's object shapes:
forged, stale and future deliveries are refused and keep nothing; a repeated
(even concurrent) delivery is stored and processed once; out-of-order
subscription updates never roll the state back; a past-due organization
cannot start jobs (402) until an invoice is paid."""
from __future__ import annotations

import json
import threading
import time

import pytest
from django.db import connection
from django.test import Client

from billing.models import BillingAccount, EventStatus, Invoice, StripeEvent
from billing.services import account_for
from billing.webhooks import process
from tests.stripe_standin import example

from .conftest import deliver, signature, stripe_event

pytestmark = pytest.mark.django_db


@pytest.fixture
def customer_account(tenant_a, synced_pro):
    account = account_for(organization=tenant_a.organization)
    BillingAccount.objects.filter(pk=account.pk).update(stripe_customer_id="cus_standin_a")
    account.refresh_from_db()
    return account


def _subscription(synced_pro, *, status="active", sub_id="sub_standin_a"):
    obj = example("subscription", id=sub_id, customer="cus_standin_a", status=status, cancel_at_period_end=False, metadata={})
    item = dict(obj["items"]["data"][0], price=dict(obj["items"]["data"][0]["price"], id=synced_pro.stripe_base_price_id),
                current_period_start=int(time.time()) - 60, current_period_end=int(time.time()) + 30 * 86400)
    obj["items"] = {"object": "list", "data": [item], "has_more": False}
    return obj


def _process_all():
    for pk in StripeEvent.objects.filter(status=EventStatus.RECEIVED).order_by("pk").values_list("pk", flat=True):
        process(pk)


@pytest.mark.parametrize("tamper, message", [
    ("body", "does not match"),
    ("secret", "does not match"),
    ("stale", "old"),
    ("future", "future"),
    ("header", "Missing or malformed"),
])
def test_forged_or_replayed_deliveries_are_refused_and_keep_nothing(client, stripe_standin, tamper, message):
    event = stripe_event("invoice.paid", example("invoice", customer="cus_x"))
    payload = json.dumps(event).encode()
    now = int(time.time())
    header = {"body": signature(payload), "secret": signature(payload, secret="whsec_wrong"),
              "stale": signature(payload, timestamp=now - 301), "future": signature(payload, timestamp=now + 301),
              "header": "v1=abc"}[tamper]
    body = payload.replace(b'"invoice.paid"', b'"invoice.voided"') if tamper == "body" else payload
    response = client.post("/stripe/webhook", data=body, content_type="application/json", HTTP_STRIPE_SIGNATURE=header)
    assert response.status_code == 400 and message in response.json()["error"]["message"]
    assert not StripeEvent.objects.exists()


def test_checkout_completed_subscribes_from_the_subscription_stripe_holds(client, tenant_a, customer_account, synced_pro,
                                                                           stripe_standin):
    subscription = stripe_standin.add_subscription(customer="cus_standin_a", price_ids=[synced_pro.stripe_base_price_id,
                                                                                         synced_pro.stripe_metered_price_id])
    session = example("checkout.session", id="cs_1", customer="cus_standin_a", subscription=subscription["id"],
                      client_reference_id=str(tenant_a.organization.pk), metadata={})
    response = deliver(client, stripe_event("checkout.session.completed", session))
    assert response.status_code == 200 and response.json()["duplicate"] is False
    assert StripeEvent.objects.get().status == EventStatus.RECEIVED  # answered before processing
    _process_all()
    account = BillingAccount.objects.get(pk=customer_account.pk)
    assert account.plan.slug == "pro" and account.status == "active" and account.stripe_subscription_id == subscription["id"]
    assert account.current_period_end is not None
    assert StripeEvent.objects.get().status == EventStatus.PROCESSED


def test_the_same_event_delivered_twice_concurrently_is_stored_and_applied_once(transactional_db, tenant_a, synced_pro):
    account = account_for(organization=tenant_a.organization)
    BillingAccount.objects.filter(pk=account.pk).update(stripe_customer_id="cus_standin_a")
    event = stripe_event("customer.subscription.created", _subscription(synced_pro), event_id="evt_twice")
    answers, barrier = [], threading.Barrier(2)

    def send():
        barrier.wait()
        try:
            answers.append(deliver(Client(), event).json())
        finally:
            connection.close()

    threads = [threading.Thread(target=send) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(a["duplicate"] for a in answers) == [False, True]
    assert StripeEvent.objects.filter(stripe_id="evt_twice").count() == 1
    pk = StripeEvent.objects.get().pk
    assert process(pk) == EventStatus.PROCESSED and process(pk) == EventStatus.PROCESSED  # the second run does nothing
    assert StripeEvent.objects.get().attempts == 1


def test_subscription_updates_out_of_order_never_roll_back(client, customer_account, synced_pro):
    now = int(time.time())
    newer = stripe_event("customer.subscription.updated", _subscription(synced_pro, status="past_due"), created=now)
    older = stripe_event("customer.subscription.updated", _subscription(synced_pro, status="active"), created=now - 120)
    deliver(client, newer)
    deliver(client, older)
    _process_all()
    account = BillingAccount.objects.get(pk=customer_account.pk)
    assert account.status == "past_due"
    assert StripeEvent.objects.get(stripe_id=older["id"]).status == EventStatus.IGNORED
    assert "older" in StripeEvent.objects.get(stripe_id=older["id"]).note


def test_past_due_blocks_new_jobs_until_an_invoice_is_paid(client, tenant_a, customer_account, synced_pro, api_for, dataset,
                                                           tiny_bert):
    api = api_for(tenant_a.key(scopes=["write"]))
    invoice = example("invoice", id="in_1", customer="cus_standin_a", status="open", amount_due=4900, amount_paid=0,
                      hosted_invoice_url="https://invoice.stripe.test/i/in_1", number="LATHE-0001")
    deliver(client, stripe_event("invoice.finalized", invoice, created=int(time.time()) - 10))
    deliver(client, stripe_event("invoice.payment_failed", invoice))
    _process_all()
    assert BillingAccount.objects.get(pk=customer_account.pk).status == "past_due"
    refused = api.post("/api/v1/jobs", {"dataset_id": dataset.pk, "base_model": "tiny-bert"}, format="json")
    assert refused.status_code == 402 and refused.json()["error"]["code"] == "payment_past_due"
    assert "payment method" in refused.json()["error"]["message"]
    paid = dict(invoice, status="paid", amount_paid=4900)
    deliver(client, stripe_event("invoice.paid", paid, created=int(time.time()) + 1))
    _process_all()
    assert BillingAccount.objects.get(pk=customer_account.pk).status == "active"
    assert api.post("/api/v1/jobs", {"dataset_id": dataset.pk, "base_model": "tiny-bert"}, format="json").status_code == 201
    listed = api.get("/api/v1/billing/invoices").json()
    assert [(i["stripe_invoice_id"], i["status"], i["hosted_invoice_url"]) for i in listed] == [
        ("in_1", "paid", "https://invoice.stripe.test/i/in_1")]
    assert Invoice.objects.count() == 1


def test_subscription_deleted_returns_to_the_free_plan(client, customer_account, synced_pro):
    deliver(client, stripe_event("customer.subscription.created", _subscription(synced_pro), created=int(time.time()) - 5))
    deliver(client, stripe_event("customer.subscription.deleted", _subscription(synced_pro, status="canceled")))
    _process_all()
    account = BillingAccount.objects.get(pk=customer_account.pk)
    assert account.plan.slug == "free" and account.status == "canceled"


def test_unknown_customers_and_unhandled_types_are_recorded_not_failed(client, stripe_standin):
    deliver(client, stripe_event("invoice.paid", example("invoice", customer="cus_nobody")))
    deliver(client, stripe_event("charge.refunded", example("invoice")))
    _process_all()
    assert set(StripeEvent.objects.values_list("status", flat=True)) == {EventStatus.IGNORED}


def test_the_sweeper_processes_lost_and_failed_events(client, customer_account, synced_pro, stripe_standin):
    """A lost doorbell, and a handler whose Stripe read failed: the sweeper gets both done."""
    from datetime import timedelta

    from django.utils import timezone

    from billing.tasks import sweep_stripe_events

    stripe_standin.add_subscription(customer="cus_standin_a", price_ids=[synced_pro.stripe_base_price_id])
    session = example("checkout.session", id="cs_2", customer="cus_standin_a", subscription="sub_missing",
                      client_reference_id=str(customer_account.organization_id), metadata={})
    deliver(client, stripe_event("checkout.session.completed", session))
    deliver(client, stripe_event("customer.subscription.updated", _subscription(synced_pro)))
    first = StripeEvent.objects.order_by("pk").first()
    assert process(first.pk) == EventStatus.FAILED  # Stripe has no sub_missing: the read fails, the error is kept
    assert "No such subscription" in StripeEvent.objects.get(pk=first.pk).note
    StripeEvent.objects.update(received_at=timezone.now() - timedelta(minutes=1))
    assert sweep_stripe_events() == 2  # the failed one retried, the never-processed one done
    statuses = dict(StripeEvent.objects.values_list("type", "status"))
    assert statuses["customer.subscription.updated"] == EventStatus.PROCESSED
    assert statuses["checkout.session.completed"] == EventStatus.FAILED
    assert StripeEvent.objects.get(pk=first.pk).attempts == 2
