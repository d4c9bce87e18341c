"""Inference usage → ledger: closed hours only, one entry per organization, device and hour, priced at the plan's
rate; the open hour counts against the allowance until then; nothing billed twice for one request."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone as dt_timezone
from decimal import Decimal

import pytest

from billing import metering, services
from billing.ledger import rollup_inference_usage
from billing.models import InferenceUsage, LedgerEntry, UsageKind

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 10, 9, 0, tzinfo=dt_timezone.utc)


def meter(organization, reference, start, seconds, device_class="cpu"):
    return metering.record_inference(organization_id=organization.pk, reference=reference, source_key="upload-1",
                                     device_class=device_class, device_count=1, started_at=start,
                                     ended_at=start + timedelta(seconds=seconds))


def test_closed_hours_roll_up_per_organization_device_and_hour(tenant_a, tenant_b):
    a, b = tenant_a.organization, tenant_b.organization
    meter(a, "inference-1", T0 + timedelta(minutes=5), 1.5)
    meter(a, "inference-2", T0 + timedelta(minutes=50), 0.25)
    meter(a, "inference-3", T0 + timedelta(hours=1, minutes=1), 2)  # the next hour
    meter(a, "inference-4", T0 + timedelta(minutes=7), 3, device_class="nvidia-h100")
    meter(b, "inference-5", T0 + timedelta(minutes=9), 4)
    meter(a, "inference-1", T0, 99)  # the same request again bills nothing more
    assert InferenceUsage.objects.get(reference="inference-1").seconds == Decimal("1.500")
    assert InferenceUsage.objects.count() == 5

    assert rollup_inference_usage(now=T0 + timedelta(minutes=59)) == []  # 09:00 is still open
    first = rollup_inference_usage(now=T0 + timedelta(hours=1, minutes=30))  # 09:00 closed, 10:00 open
    plan = services.account_for(organization=a).plan
    by_key = {(e.organization_id, e.device_class): e for e in first}
    assert len(first) == 3
    cpu = by_key[(a.pk, "cpu")]
    assert cpu.usage_kind == UsageKind.INFERENCE and cpu.job_id is None and cpu.attempt == 0
    assert cpu.seconds == Decimal("1.750") and cpu.usd_per_second == plan.rate_for("cpu")
    assert cpu.amount_micros == services.amount_micros(seconds=Decimal("1.75"), device_count=1,
                                                      usd_per_second=plan.rate_for("cpu"))
    assert "2 request(s)" in cpu.note and cpu.billable
    assert by_key[(a.pk, "nvidia-h100")].usd_per_second == plan.rate_for("nvidia-h100")
    assert by_key[(b.pk, "cpu")].seconds == Decimal("4.000")
    later = rollup_inference_usage(now=T0 + timedelta(hours=3))
    assert [(e.organization_id, e.seconds) for e in later] == [(a.pk, Decimal("2.000"))]
    assert rollup_inference_usage(now=T0 + timedelta(hours=3)) == []  # each request in exactly one entry
    assert LedgerEntry.objects.filter(usage_kind=UsageKind.INFERENCE).count() == 4
    assert not InferenceUsage.objects.filter(ledger_entry__isnull=True).exists()


def test_the_open_hour_counts_against_the_allowance(tenant_a):
    from django.utils import timezone

    organization = tenant_a.organization
    before = services.period_usage(organization=organization).used_micros
    meter(organization, "inference-9", timezone.now() - timedelta(seconds=2), 1000)
    rate = services.account_for(organization=organization).plan.rate_for("cpu")
    after = services.period_usage(organization=organization).used_micros
    assert after - before == services.amount_micros(seconds=Decimal(1000), device_count=1, usd_per_second=rate) > 0
