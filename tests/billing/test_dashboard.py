"""The Billing page's buttons and forms, and the launch form's quote."""
from __future__ import annotations

import pytest

from billing.models import BillingAccount
from billing.services import account_for

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(client, tenant_a, media):
    client.force_login(tenant_a.owner)
    return client


def test_quote_appears_under_the_launch_form(browser, tenant_a, dataset, tiny_bert):
    url = f"/o/{tenant_a.organization.slug}/jobs/quote"
    page = browser.get(f"/o/{tenant_a.organization.slug}/jobs").content.decode()
    assert 'data-testid="quote-button"' in page and f'hx-post="{url}"' in page
    quote = browser.post(url, {"dataset_id": dataset.pk, "base_model": "tiny-bert", "method": "full", "epochs": "3"},
                         HTTP_HX_REQUEST="true").content.decode()
    assert 'data-testid="quote"' in quote and "on cpu" in quote and "free plan" in quote
    bad = browser.post(url, {"dataset_id": dataset.pk, "base_model": "tiny-bert", "method": "full", "epochs": "0"},
                       HTTP_HX_REQUEST="true").content.decode()
    assert 'data-testid="quote-error"' in bad and "epochs" in bad


def test_spend_cap_form_and_checkout_redirect(browser, tenant_a, synced_pro):
    base = f"/o/{tenant_a.organization.slug}/billing"
    assert browser.post(f"{base}/spend-cap", {"spend_cap_usd": "abc"}, follow=True).content.decode().count("is not an amount") == 1
    browser.post(f"{base}/spend-cap", {"spend_cap_usd": "40"})
    assert account_for(organization=tenant_a.organization).spend_cap_cents == 4000
    page = browser.get(base).content.decode()
    assert 'name="plan" value="pro"' in page and "$49.00" in page
    checkout = browser.post(f"{base}/checkout", {"plan": "pro"})
    assert checkout.status_code == 302 and checkout["Location"].startswith("https://checkout.stripe.test/")
    BillingAccount.objects.filter(organization=tenant_a.organization).update(stripe_customer_id="cus_standin1")
    portal = browser.post(f"{base}/portal")
    assert portal.status_code == 302 and portal["Location"].startswith("https://billing.stripe.test/")


def test_members_see_billing_but_cannot_change_it(client, tenant_a, make_user, media):
    member = make_user(email="member@example.com")
    tenant_a.add_member(member)
    client.force_login(member)
    base = f"/o/{tenant_a.organization.slug}/billing"
    page = client.get(base).content.decode()
    assert 'data-testid="spend-cap-form"' not in page
    refused = client.post(f"{base}/spend-cap", {"spend_cap_usd": "1"}, follow=True).content.decode()
    assert "Only an admin or an owner" in refused
    assert account_for(organization=tenant_a.organization).spend_cap_cents is None
