"""A plan change from Stripe's webhooks lands in the organization's audit log."""
import time

import pytest

from audit.models import AuditAction, AuditEvent
from billing.models import BillingAccount
from billing.services import account_for
from billing.webhooks import process

from .conftest import deliver, stripe_event
from .test_webhooks import _subscription

pytestmark = pytest.mark.django_db


def test_a_subscription_that_changes_the_plan_is_audited_once(client, tenant_a, synced_pro):
    account = account_for(organization=tenant_a.organization)
    BillingAccount.objects.filter(pk=account.pk).update(stripe_customer_id="cus_standin_a")
    for delay in (10, 5):  # the same plan twice: one change
        response = deliver(client, stripe_event("customer.subscription.updated", _subscription(synced_pro),
                                                created=int(time.time()) - delay))
        assert response.status_code == 200
    from billing.models import StripeEvent

    for pk in StripeEvent.objects.order_by("pk").values_list("pk", flat=True):
        process(pk)
    events = AuditEvent.objects.filter(organization=tenant_a.organization, action=AuditAction.PLAN_CHANGED)
    assert events.count() == 1
    event = events.get()
    assert event.data["from"] == "free" and event.data["to"] == "pro" and event.actor_label == "system"
    assert event.target_label == synced_pro.name
