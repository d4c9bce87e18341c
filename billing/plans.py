"""The default plans: seeded by migration 0002, and re-created by
`ensure_default_plans` if the table is ever emptied (so an organization always
has a plan to fall back on). Rates are USD per device-second."""
from __future__ import annotations

from decimal import Decimal

RATES = {"cpu": Decimal("0.00002"), "nvidia-h100": Decimal("0.000972"), "nvidia-a100": Decimal("0.000556"),
         "nvidia-*": Decimal("0.0005")}
DEFAULT_PLANS = [
    dict(slug="free", name="Free", kind="free", sort_order=0, monthly_price_cents=0, included_compute_cents=200,
         max_concurrent_jobs=2, queue_priority=7, max_dataset_bytes=50_000_000, storage_quota_bytes=500_000_000,
         api_rate="300/min"),
    dict(slug="payg", name="Pay as you go", kind="payg", sort_order=1, monthly_price_cents=0, included_compute_cents=0,
         max_concurrent_jobs=4, queue_priority=4, max_dataset_bytes=500_000_000, storage_quota_bytes=20_000_000_000,
         api_rate="1200/min"),
    dict(slug="pro", name="Pro", kind="subscription", sort_order=2, monthly_price_cents=4900, included_compute_cents=5000,
         max_concurrent_jobs=4, queue_priority=3, max_dataset_bytes=1_000_000_000, storage_quota_bytes=50_000_000_000,
         api_rate="3000/min"),
    dict(slug="team", name="Team", kind="subscription", sort_order=3, monthly_price_cents=24900, included_compute_cents=30000,
         max_concurrent_jobs=8, queue_priority=1, max_dataset_bytes=2_000_000_000, storage_quota_bytes=200_000_000_000,
         api_rate="6000/min"),
]


def ensure_default_plans(Plan=None, PlanRate=None) -> None:
    """Create the default plans that do not exist (by slug); never changes existing ones."""
    if Plan is None:
        from .models import Plan, PlanRate
    for fields in DEFAULT_PLANS:
        plan, created = Plan.objects.get_or_create(slug=fields["slug"], defaults=fields)
        if created:
            PlanRate.objects.bulk_create([PlanRate(plan=plan, device_class=d, usd_per_second=r) for d, r in RATES.items()])
