"""What an organization may do and use, as one frozen object (after Zulip,
which keeps entitlements on the tenant side and asks billing through one narrow
hook): limits, queue, rates, spend-cap facts.

The type and the lookup live here, below every app that asks (core's throttle,
corpora's limits, jobs' submission, claim and spend watch), so none of them
imports billing. Billing, which owns plans and accounts, registers the one
provider in its AppConfig.ready().

Read it once per request or claim and pass it down. `request_entitlements`
keeps it on the request for the request's lifetime (the throttle and the view
share one read); nothing is cached across requests or in the process, so a
plan changed by a Stripe webhook applies to the next request."""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.core.exceptions import ImproperlyConfigured


@dataclass(frozen=True)
class Entitlements:
    # The plan
    plan_slug: str
    plan_name: str
    plan_is_free: bool  # no payment method: the included compute is all there is (the cap is the allowance)
    allowed_job_kinds: tuple[str, ...]  # empty: every kind
    # Where and how many jobs run
    queue: str  # empty: the installation's default queue (LATHE_DEFAULT_QUEUE)
    priority: int  # 0 (first) … 9
    max_concurrent_jobs: int
    # Requests and storage
    api_rate: str  # a DRF rate, e.g. "1200/min"
    max_dataset_bytes: int
    storage_quota_bytes: int
    # Money: USD per device-second by device class, ((device_class, rate), ...) sorted
    rates: tuple[tuple[str, Decimal], ...]
    included_compute_micros: int
    spend_cap_micros: int | None  # None: no cap
    subscription_period: tuple[datetime, datetime] | None  # the subscription's current period, if any
    blocked_status: str | None  # a status that refuses new jobs ("past due", "unpaid"), else None

    def rate_for(self, device_class: str) -> Decimal:
        return device_rate(dict(self.rates), device_class)


def device_rate(rates: Mapping[str, Decimal], device_class: str) -> Decimal:
    """USD per device-second from a rate table (billing.Plan's, an Entitlements'):
    the exact class, else its family default ('nvidia-*'), else 'cpu'."""
    if device_class in rates:
        return rates[device_class]
    if device_class.startswith("nvidia-") and "nvidia-*" in rates:
        return rates["nvidia-*"]
    return rates.get("cpu", Decimal("0"))


Provider = Callable[..., Entitlements]
_provider: Provider | None = None
REQUEST_ATTRIBUTE = "_lathe_entitlements"


def register_provider(provider: Provider) -> None:
    """Billing's AppConfig.ready() registers `provider(*, organization) -> Entitlements`."""
    global _provider
    _provider = provider


def entitlements_for(*, organization) -> Entitlements:
    """The organization's entitlements, read now (never cached)."""
    if _provider is None:
        raise ImproperlyConfigured("No entitlements provider is registered (billing's AppConfig.ready() registers it).")
    return _provider(organization=organization)


def request_entitlements(request, *, organization=None) -> Entitlements:
    """The entitlements of the request's organization, read at most once per
    request: kept on the request (Django's, under DRF's wrapper, so both see it)."""
    organization = organization if organization is not None else request.organization
    holder = getattr(request, "_request", request)
    kept = getattr(holder, REQUEST_ATTRIBUTE, None)
    if kept is not None and kept[0] == organization.pk:
        return kept[1]
    entitlements = entitlements_for(organization=organization)
    setattr(holder, REQUEST_ATTRIBUTE, (organization.pk, entitlements))
    return entitlements
