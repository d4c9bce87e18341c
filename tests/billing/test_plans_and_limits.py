"""Plans synced to Stripe idempotently; checkout and portal; plan limits,
spend caps with alerts, the free allowance, quotes and per-job budgets — with
and without Stripe keys."""
from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.utils import timezone

from billing import ledger
from billing.models import BillingAccount, Plan, PlanRate, SpendAlert, UsageSegment
from billing.services import account_for, check_can_start_job
from jobs.models import Job, JobKind, JobState
from tests.jobs.history import measured_job

pytestmark = pytest.mark.django_db


def test_plan_sync_is_idempotent_and_prices_the_allowance_at_zero(synced_pro, stripe_standin):
    from billing.services import plan_sync

    first = {k: getattr(synced_pro, k) for k in ("stripe_product_id", "stripe_base_price_id", "stripe_meter_id",
                                                  "stripe_metered_price_id")}
    plan_sync(plan=synced_pro)
    synced_pro.refresh_from_db()
    assert first == {k: getattr(synced_pro, k) for k in first}
    state = stripe_standin.state
    assert len(state.products) == 1 and len(state.meters) == 1 and len(state.prices) == 2
    metered = state.prices[synced_pro.stripe_metered_price_id]
    assert metered["recurring"]["usage_type"] == "metered" and metered["recurring"]["meter"] == synced_pro.stripe_meter_id
    assert metered["tiers"][0] == {"up_to": str(5000 * 10_000), "unit_amount_decimal": "0"}  # $50 included, in micro-dollars
    assert metered["tiers"][1]["unit_amount_decimal"] == "0.0001"
    assert state.prices[synced_pro.stripe_base_price_id]["unit_amount"] == 4900
    # A changed allowance is a new price (Stripe prices are immutable); the meter stays.
    Plan.objects.filter(pk=synced_pro.pk).update(included_compute_cents=7000)
    synced_pro.refresh_from_db()
    plan_sync(plan=synced_pro)
    synced_pro.refresh_from_db()
    assert synced_pro.stripe_metered_price_id != first["stripe_metered_price_id"] and len(state.meters) == 1


def test_checkout_and_portal_through_stripe(tenant_a, api_for, synced_pro, stripe_standin):
    admin = api_for(tenant_a.key(scopes=["admin"]))
    member = api_for(tenant_a.key(scopes=["write"]))
    assert member.post("/api/v1/billing/checkout", {"plan": "pro"}, format="json").status_code == 403
    no_customer = admin.post("/api/v1/billing/portal", format="json")
    assert no_customer.status_code == 409 and no_customer.json()["error"]["code"] == "no_customer"
    first = admin.post("/api/v1/billing/checkout", {"plan": "pro"}, format="json")
    assert first.status_code == 201 and first.json()["url"].startswith("https://checkout.stripe.test/")
    admin.post("/api/v1/billing/checkout", {"plan": "pro"}, format="json")
    assert len(stripe_standin.state.customers) == 1  # one customer, made when first needed
    session = [p for m, path, p in stripe_standin.state.requests if path == "/v1/checkout/sessions"][0]
    assert [item.get("price") for item in session["line_items"]] == [synced_pro.stripe_base_price_id,
                                                                     synced_pro.stripe_metered_price_id]
    assert "quantity" not in session["line_items"][1]  # Checkout refuses a quantity on a metered price
    assert session["client_reference_id"] == str(tenant_a.organization.pk)
    # Nothing changes until Stripe's webhook says so.
    assert account_for(organization=tenant_a.organization).plan.slug == "free"
    portal = admin.post("/api/v1/billing/portal", format="json")
    assert portal.status_code == 201 and portal.json()["url"].startswith("https://billing.stripe.test/")
    unknown = admin.post("/api/v1/billing/checkout", {"plan": "platinum"}, format="json")
    assert unknown.status_code == 404 and "plan" in unknown.json()["error"]["fields"]  # like any unknown reference


def test_without_stripe_keys_paid_plans_explain_and_everything_else_works(client, tenant_a, api_for, settings):
    settings.STRIPE_SECRET_KEY = ""
    admin = api_for(tenant_a.key(scopes=["admin"]))
    response = admin.post("/api/v1/billing/checkout", {"plan": "pro"}, format="json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "billing_not_configured"
    assert admin.get("/api/v1/billing/subscription").json()["billing_configured"] is False
    assert admin.patch("/api/v1/billing/spend-cap", {"spend_cap_usd": "25.00"}, format="json").status_code == 200
    usage = admin.get("/api/v1/billing/usage").json()
    assert usage["plan"] == "free" and usage["included_usd"] == "2.0000" and usage["spend_cap_usd"] == "0.0000"
    client.force_login(tenant_a.owner)
    page = client.get(f"/o/{tenant_a.organization.slug}/billing").content.decode()
    assert 'data-testid="billing-off"' in page and "billing not configured" in page


def _usage(tenant, dataset, base_model, *, seconds, device="nvidia-h100"):
    job = Job.objects.create(organization=tenant.organization, kind=JobKind.FINETUNE, state=JobState.SUCCEEDED, attempts=1,
                             dataset_version=dataset.latest_version, base_model=base_model, labels=["a", "b"])
    now = timezone.now()
    UsageSegment.objects.create(organization=tenant.organization, job=job, attempt=1, lease_token=uuid.uuid4(),
                                device_class=device, device_count=1, started_at=now - timedelta(seconds=seconds),
                                ended_at=now - timedelta(seconds=1), seconds=Decimal(seconds))
    return job


def test_free_allowance_then_402(tenant_a, api_for, dataset, tiny_bert):
    api = api_for(tenant_a.key(scopes=["write"]))
    _usage(tenant_a, dataset, tiny_bert, seconds=2000)  # 2000 s × $0.000972 = $1.944 of the $2.00
    assert api.post("/api/v1/jobs", {"dataset_id": dataset.pk, "base_model": "tiny-bert"}, format="json").status_code == 201
    _usage(tenant_a, dataset, tiny_bert, seconds=100)  # now beyond $2.00 (even before the rollup)
    refused = api.post("/api/v1/jobs", {"dataset_id": dataset.pk, "base_model": "tiny-bert"}, format="json")
    assert refused.status_code == 402 and refused.json()["error"]["code"] == "allowance_used"
    assert "$2.00" in refused.json()["error"]["message"]


def test_spend_cap_alerts_once_at_50_80_100_then_refuses(client, tenant_a, api_for, dataset, tiny_bert):
    account = account_for(organization=tenant_a.organization)
    BillingAccount.objects.filter(pk=account.pk).update(plan=Plan.objects.get(slug="payg"), spend_cap_cents=1000)  # $10
    api = api_for(tenant_a.key(scopes=["write"]))
    mail.outbox.clear()
    _usage(tenant_a, dataset, tiny_bert, seconds=5200)  # $5.05: 50 %
    ledger.rollup_usage()
    assert ledger.check_spend_alerts(organization=tenant_a.organization) == [50]
    assert ledger.check_spend_alerts(organization=tenant_a.organization) == []  # once per period
    _usage(tenant_a, dataset, tiny_bert, seconds=3300)  # $8.26: 80 %
    assert ledger.check_spend_alerts(organization=tenant_a.organization) == [80]
    assert api.post("/api/v1/jobs", {"dataset_id": dataset.pk, "base_model": "tiny-bert"}, format="json").status_code == 201
    _usage(tenant_a, dataset, tiny_bert, seconds=2000)  # $10.21: 100 %
    assert ledger.check_spend_alerts(organization=tenant_a.organization) == [100]
    assert [m.subject for m in mail.outbox] == [f"Lathe: {tenant_a.organization.name} has used {t}% of its monthly spend cap"
                                                for t in (50, 80, 100)]
    assert mail.outbox[0].to == [tenant_a.owner.email]
    refused = api.post("/api/v1/jobs", {"dataset_id": dataset.pk, "base_model": "tiny-bert"}, format="json")
    assert refused.status_code == 402 and refused.json()["error"]["code"] == "spend_cap_reached"
    client.force_login(tenant_a.owner)
    page = client.get(f"/o/{tenant_a.organization.slug}/jobs").content.decode()
    assert 'data-testid="billing-banner"' in page and "100% of the monthly spend cap" in page
    assert SpendAlert.objects.count() == 3


def test_plan_limits_apply_kinds_and_concurrency(tenant_a, api_for, dataset, tiny_bert):
    from jobs import lifecycle

    plan = Plan.objects.get(slug="free")
    Plan.objects.filter(pk=plan.pk).update(allowed_job_kinds=["quantize"], max_concurrent_jobs=1)
    api = api_for(tenant_a.key(scopes=["write"]))
    refused = api.post("/api/v1/jobs", {"dataset_id": dataset.pk, "base_model": "tiny-bert"}, format="json")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "plan_limit"
    assert "kind" in refused.json()["error"]["fields"]
    Plan.objects.filter(pk=plan.pk).update(allowed_job_kinds=[])
    first = api.post("/api/v1/jobs", {"dataset_id": dataset.pk, "base_model": "tiny-bert"}, format="json").json()["id"]
    second = api.post("/api/v1/jobs", {"dataset_id": dataset.pk, "base_model": "tiny-bert"}, format="json").json()["id"]
    assert Job.objects.get(pk=first).priority == plan.queue_priority
    assert lifecycle.job_claim(job_id=first, worker="w1", device_class="cpu") is not None
    assert lifecycle.job_claim(job_id=second, worker="w2", device_class="cpu") is None  # the plan allows one at a time


def test_dataset_limit_comes_from_the_plan(tenant_a, api_for, media):
    from django.core.files.uploadedfile import SimpleUploadedFile

    Plan.objects.filter(slug="free").update(max_dataset_bytes=100)
    api = api_for(tenant_a.key(scopes=["write"]))
    content = b"text,label\n" + b"".join(b"row number %d,%s\n" % (i, b"ab"[i % 2:i % 2 + 1]) for i in range(20))
    response = api.post("/api/v1/datasets", {"file": SimpleUploadedFile("d.csv", content)}, format="multipart")
    assert response.status_code == 413 and "100 B" in response.json()["error"]["message"]


def test_quote_before_launch(tenant_a, api_for, dataset, tiny_bert):
    api = api_for(tenant_a.key(scopes=["write"]))
    body = {"dataset_id": dataset.pk, "base_model": "tiny-bert", "hyperparameters": {"epochs": 4}}
    quote = api.post("/api/v1/jobs/quote", body, format="json")
    assert quote.status_code == 200, quote.content
    q = quote.json()
    assert q["device_class"] == "cpu" and q["low_seconds"] <= q["estimated_seconds"] <= q["high_seconds"]
    assert "default throughput" in q["basis"] and Decimal(q["estimated_cost_usd"]) > 0
    assert not Job.objects.exists()  # a quote queues nothing
    more = api.post("/api/v1/jobs/quote", {**body, "hyperparameters": {"epochs": 8}}, format="json").json()
    assert more["estimated_seconds"] > q["estimated_seconds"]  # twice the epochs, more time
    bad = api.post("/api/v1/jobs/quote", {**body, "hyperparameters": {"epochs": 0}}, format="json")
    assert bad.status_code == 400 and "hyperparameters.epochs" in bad.json()["error"]["fields"]
    # Once a job of its method has run on this device class, what it measured is the basis (tests/billing/test_quotes.py).
    tiny_bert.refresh_from_db()
    measured_job(tenant_a.organization, dataset.latest_version, tiny_bert, tokens_per_second=50.0)
    PlanRate.objects.filter(plan__slug="free", device_class="cpu").update(usd_per_second=Decimal("0.001"))
    measured = api.post("/api/v1/jobs/quote", body, format="json").json()
    assert "measured on the last 1 full on cpu" in measured["basis"] and measured["history_jobs"] == 1
    assert measured["usd_per_second"] == "0.00100000"


def test_spend_cap_api_is_for_admins_and_validates(tenant_a, api_for):
    member, admin = api_for(tenant_a.key(scopes=["write"])), api_for(tenant_a.key(scopes=["admin"]))
    assert member.patch("/api/v1/billing/spend-cap", {"spend_cap_usd": "5"}, format="json").status_code == 403
    bad = admin.patch("/api/v1/billing/spend-cap", {"spend_cap_usd": "-3"}, format="json")
    assert bad.status_code == 400 and "spend_cap_usd" in bad.json()["error"]["fields"]
    ok = admin.patch("/api/v1/billing/spend-cap", {"spend_cap_usd": "12.50"}, format="json")
    assert ok.status_code == 200 and ok.json()["spend_cap_cents"] == 1250
    assert admin.patch("/api/v1/billing/spend-cap", {"spend_cap_usd": None}, format="json").json()["spend_cap_cents"] is None


def test_usage_api_and_page_add_up(client, tenant_a, api_for, dataset, tiny_bert):
    BillingAccount.objects.filter(pk=account_for(organization=tenant_a.organization).pk).update(plan=Plan.objects.get(slug="payg"))
    first = _usage(tenant_a, dataset, tiny_bert, seconds=1000)
    _usage(tenant_a, dataset, tiny_bert, seconds=500, device="cpu")
    ledger.rollup_usage()
    usage = api_for(tenant_a.key(scopes=["read"])).get("/api/v1/billing/usage").json()
    assert usage["used_usd"] == "0.9820"  # 1000 × 0.000972 + 500 × 0.00002
    assert sum(Decimal(d["usd"]) for d in usage["per_day"]) == Decimal("0.9820")
    assert usage["per_job"][0]["job_id"] == first.pk and usage["per_job"][0]["usd"] == "0.9720"
    client.force_login(tenant_a.owner)
    page = client.get(f"/o/{tenant_a.organization.slug}/billing").content.decode()
    assert 'data-testid="usage-chart"' in page and "$0.9720" in page


def test_check_can_start_job_is_the_one_gate(tenant_a):
    account = account_for(organization=tenant_a.organization)
    assert check_can_start_job(organization=tenant_a.organization, kind="finetune").plan_slug == "free"
    BillingAccount.objects.filter(pk=account.pk).update(status="unpaid")
    with pytest.raises(Exception) as refused:
        check_can_start_job(organization=tenant_a.organization, kind="finetune")
    assert refused.value.status_code == 402
