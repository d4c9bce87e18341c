"""One frozen entitlements object (tenancy.entitlements), provided by billing:
read once per request or claim — the throttle and the view share one read —
and never cached past the request, so a changed plan applies to the next one."""
from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest
from django.conf import settings
from django.test import RequestFactory

from billing.models import BillingAccount, Plan, PlanRate
from billing.services import account_for, entitlements_of
from tenancy import entitlements as hook
from tenancy.entitlements import Entitlements, entitlements_for, request_entitlements

pytestmark = pytest.mark.django_db


@pytest.fixture
def provider_calls(monkeypatch):
    """Every read of an organization's entitlements, through the registered provider."""
    calls = []
    registered = hook._provider
    assert registered is entitlements_of  # billing's AppConfig.ready() registered it

    def counting(*, organization):
        calls.append(organization.pk)
        return registered(organization=organization)
    monkeypatch.setattr(hook, "_provider", counting)
    return calls


def test_entitlements_are_frozen_and_carry_the_plan_and_account(tenant_a):
    account = account_for(organization=tenant_a.organization)
    BillingAccount.objects.filter(pk=account.pk).update(spend_cap_cents=1234)
    facts = entitlements_for(organization=tenant_a.organization)
    assert isinstance(facts, Entitlements)
    free = Plan.objects.get(slug="free")
    assert (facts.plan_slug, facts.plan_is_free, facts.priority, facts.max_concurrent_jobs, facts.api_rate) == (
        "free", True, free.queue_priority, free.max_concurrent_jobs, free.api_rate)
    assert facts.storage_quota_bytes == free.storage_quota_bytes and facts.max_dataset_bytes == free.max_dataset_bytes
    assert facts.spend_cap_micros == 1234 * 10_000 and facts.included_compute_micros == free.included_compute_cents * 10_000
    assert facts.rate_for("nvidia-h100") == Decimal("0.000972") and facts.rate_for("nvidia-l4") == Decimal("0.0005")
    assert facts.rate_for("tpu") == facts.rate_for("cpu")  # like Plan.rate_for
    with pytest.raises(dataclasses.FrozenInstanceError):
        facts.max_concurrent_jobs = 99
    with pytest.raises(TypeError):
        facts.rates[0] = ("cpu", Decimal("0"))  # the rate table is a tuple, not a dict to edit
    hash(facts)  # frozen all the way down: usable as a key


def test_each_read_is_fresh_so_a_changed_plan_applies_at_once(tenant_a):
    """No process-wide cache: after a Stripe webhook moves the organization to
    another plan (or an operator edits a rate), the next read says so."""
    before = entitlements_for(organization=tenant_a.organization)
    account = account_for(organization=tenant_a.organization)
    BillingAccount.objects.filter(pk=account.pk).update(plan=Plan.objects.get(slug="team"), status="past_due")
    PlanRate.objects.filter(plan__slug="team", device_class="cpu").update(usd_per_second=Decimal("0.5"))
    after = entitlements_for(organization=tenant_a.organization)
    assert before.plan_slug == "free" and after.plan_slug == "team" and after.plan_is_free is False
    assert after.rate_for("cpu") == Decimal("0.5") and after.blocked_status == "past due" and before.blocked_status is None


def test_a_request_reads_them_once(tenant_a, tenant_b, provider_calls):
    request = RequestFactory().get("/")
    request.organization = tenant_a.organization
    first = request_entitlements(request)
    assert request_entitlements(request) is first and provider_calls == [tenant_a.organization.pk]
    # Another organization on the same request object is not served A's.
    assert request_entitlements(request, organization=tenant_b.organization).plan_slug == "free"
    assert provider_calls == [tenant_a.organization.pk, tenant_b.organization.pk]
    # A new request reads afresh.
    other = RequestFactory().get("/")
    other.organization = tenant_a.organization
    request_entitlements(other)
    assert len(provider_calls) == 3


def test_one_api_submission_reads_the_plan_once(tenant_a, api_for, dataset, tiny_bert, provider_calls,
                                                 django_capture_on_commit_callbacks):
    """Throttle (API rate), admission (kinds, subscription status, spend cap,
    free allowance), queue, priority and the event's queue name: one read."""
    api = api_for(tenant_a.key(scopes=["write"]))
    with django_capture_on_commit_callbacks(execute=False):
        created = api.post("/api/v1/jobs", {"dataset_id": dataset.pk, "base_model": "tiny-bert"}, format="json")
    assert created.status_code == 201, created.content
    assert provider_calls == [tenant_a.organization.pk]
    from jobs.models import Job

    job = Job.objects.get(pk=created.json()["id"])
    assert (job.queue, job.priority) == (settings.LATHE_DEFAULT_QUEUE, Plan.objects.get(slug="free").queue_priority)
    provider_calls.clear()
    quoted = api.post("/api/v1/jobs/quote", {"dataset_id": dataset.pk, "base_model": "tiny-bert"}, format="json")
    assert quoted.status_code == 200 and quoted.json()["plan"] == "free"
    assert provider_calls == [tenant_a.organization.pk]  # the dry run and the price share it too


def test_a_claim_reads_them_once(tenant_a, api_for, dataset, tiny_bert, provider_calls,
                                 django_capture_on_commit_callbacks):
    from jobs import lifecycle

    api = api_for(tenant_a.key(scopes=["write"]))
    with django_capture_on_commit_callbacks(execute=False):
        job_id = api.post("/api/v1/jobs", {"dataset_id": dataset.pk, "base_model": "tiny-bert"}, format="json").json()["id"]
    provider_calls.clear()
    claimed, _token = lifecycle.job_claim(job_id=job_id, worker="w", device_class="cpu")
    assert claimed.state == "running" and provider_calls == [tenant_a.organization.pk]


def test_a_running_attempt_prices_at_its_rates_but_sees_cap_changes_at_once(tenant_a, dataset, tiny_bert):
    """billing.services.spend_capped, the spend watch's check after each
    heartbeat: usage priced at the rates read when the attempt started (not the
    rate table again every beat), the cap and plan as they are now."""
    import uuid

    from django.utils import timezone

    from billing.models import UsageSegment
    from billing.services import spend_capped
    from jobs.models import Job, JobKind, JobState

    organization = tenant_a.organization
    at_start = entitlements_for(organization=organization)  # free: $2.00 included, nothing beyond
    job = Job.objects.create(organization=organization, kind=JobKind.FINETUNE, state=JobState.RUNNING, attempts=1,
                             dataset_version=dataset.latest_version, base_model=tiny_bert, labels=["a", "b"])
    now = timezone.now()
    UsageSegment.objects.create(organization=organization, job=job, attempt=1, lease_token=uuid.uuid4(),
                                device_class="nvidia-h100", started_at=now, ended_at=now, seconds=Decimal("2100"))
    assert spend_capped(organization=organization, entitlements=at_start)  # 2100 s × $0.000972 > $2.00
    PlanRate.objects.filter(plan__slug="free").update(usd_per_second=Decimal("0"))  # the rates are not read again
    assert spend_capped(organization=organization, entitlements=at_start)
    # The organization upgrades (a webhook) and sets a cap: the next beat sees both.
    account = account_for(organization=organization)
    BillingAccount.objects.filter(pk=account.pk).update(plan=Plan.objects.get(slug="payg"), spend_cap_cents=1000)
    assert not spend_capped(organization=organization, entitlements=at_start)  # $2.04 of a $10 cap
    BillingAccount.objects.filter(pk=account.pk).update(spend_cap_cents=100)  # lowered below the spend
    assert spend_capped(organization=organization, entitlements=at_start)
