"""Billing state changes and the checks other apps ask for: an organization's
entitlements (the provider behind tenancy.entitlements, registered in
apps.py), period usage and spend caps, may this organization start a job.
Subscription state itself changes only in `webhooks` (from verified Stripe
events)."""
from __future__ import annotations

import calendar
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone as dt_timezone
from decimal import ROUND_HALF_UP, Decimal

from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from audit.models import AuditAction
from audit.services import audit_record
from core.errors import ApplicationError, PermissionDenied, field_error
from tenancy.actors import Actor
from tenancy.entitlements import Entitlements
from tenancy.models import Organization, Role

from . import gateway
from .models import MICROS_PER_CENT, BillingAccount, InferenceUsage, LedgerEntry, Plan, PlanKind, UsageSegment

logger = logging.getLogger(__name__)
DEFAULT_PLAN_SLUG = "free"


class PaymentRequired(ApplicationError):
    def __init__(self, message: str, code: str):
        super().__init__(message, code=code, status=402)


def default_plan() -> Plan:
    plan = Plan.objects.filter(slug=DEFAULT_PLAN_SLUG).first() or Plan.objects.filter(kind=PlanKind.FREE).first()
    if plan is None:  # the plans were deleted (or a test flushed the tables): the defaults come back
        from .plans import ensure_default_plans

        ensure_default_plans()
        plan = Plan.objects.get(slug=DEFAULT_PLAN_SLUG)
    return plan


def account_for(*, organization: Organization) -> BillingAccount:
    account = BillingAccount.objects.filter(organization=organization).select_related("plan").first()
    if account is not None:
        return account
    try:
        with transaction.atomic():
            return BillingAccount.objects.create(organization=organization, plan=default_plan())
    except IntegrityError:  # created concurrently
        return BillingAccount.objects.select_related("plan").get(organization=organization)


def plan_for(*, organization: Organization) -> Plan:
    """Billing's own pages and API; other apps read `tenancy.entitlements` instead."""
    return account_for(organization=organization).plan


def entitlements_of(*, organization: Organization) -> Entitlements:
    """The provider of tenancy.entitlements.entitlements_for: the plan's limits,
    rates and the account's spend-cap facts, read now (two queries: the account
    with its plan, the plan's rates)."""
    account = account_for(organization=organization)
    return _entitlements(account, rates=tuple(sorted(account.plan.rate_table.items())))


def _entitlements(account: BillingAccount, *, rates: tuple) -> Entitlements:
    plan = account.plan
    return Entitlements(
        plan_slug=plan.slug, plan_name=plan.name, plan_is_free=plan.kind == PlanKind.FREE,
        allowed_job_kinds=tuple(plan.allowed_job_kinds or ()), queue=plan.queue, priority=plan.queue_priority,
        max_concurrent_jobs=plan.max_concurrent_jobs, api_rate=plan.api_rate, max_dataset_bytes=plan.max_dataset_bytes,
        storage_quota_bytes=plan.storage_quota_bytes, rates=rates,
        included_compute_micros=plan.included_compute_cents * MICROS_PER_CENT,
        spend_cap_micros=account.spend_cap_cents * MICROS_PER_CENT if account.spend_cap_cents is not None else None,
        subscription_period=((account.current_period_start, account.current_period_end)
                             if account.current_period_start and account.current_period_end else None),
        blocked_status=account.get_status_display().lower() if account.is_blocked else None)


# --- periods and money ----------------------------------------------------------------

@dataclass(frozen=True)
class Period:
    start: datetime
    end: datetime


def period_for(account: BillingAccount | Entitlements, when: datetime | None = None) -> Period:
    """The subscription's current period when `when` falls in it, else the calendar month (UTC)."""
    when = when or timezone.now()
    if isinstance(account, Entitlements):
        start, end = account.subscription_period or (None, None)
    else:
        start, end = account.current_period_start, account.current_period_end
    if start and end and start <= when < end:
        return Period(start, end)
    utc = when.astimezone(dt_timezone.utc)
    start = utc.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    days = calendar.monthrange(start.year, start.month)[1]
    return Period(start, start + timedelta(days=days))


def amount_micros(*, seconds: Decimal, device_count: int, usd_per_second: Decimal) -> int:
    return int((Decimal(seconds) * device_count * usd_per_second * 1_000_000).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def price(row: dict, plan: Plan | Entitlements) -> int:
    """Micro-dollars of an aggregated usage row (device_class, device_count, seconds)
    at the rates of `plan` (a Plan, or Entitlements: both have rate_for)."""
    return amount_micros(seconds=row["seconds"] or 0, device_count=row["device_count"],
                         usd_per_second=plan.rate_for(row["device_class"]))


def dollars(micros: int) -> Decimal:
    """Dollars, to the cent, for messages."""
    return (Decimal(micros) / 1_000_000).quantize(Decimal("0.01"))


def usd(micros: int) -> str:
    """Dollars to the hundredth of a cent, as a string for JSON."""
    return str((Decimal(micros) / 1_000_000).quantize(Decimal("0.0001")))


@dataclass
class PeriodUsage:
    period: Period
    used_micros: int  # ledger + usage not rolled up yet (running attempts)
    included_micros: int
    cap_micros: int | None

    @property
    def included_used_micros(self) -> int:
        return min(self.used_micros, self.included_micros)

    @property
    def overage_micros(self) -> int:
        return max(0, self.used_micros - self.included_micros)

    @property
    def is_capped(self) -> bool:
        """The cap (beyond the included compute) is spent; for the free plan, the allowance."""
        return self.cap_micros is not None and self.used_micros >= self.included_micros + self.cap_micros

    @property
    def cap_fraction(self) -> float | None:
        if self.cap_micros is None:
            return None
        return self.overage_micros / self.cap_micros if self.cap_micros else (1.0 if self.overage_micros else 0.0)


def unrolled_micros(*, organization: Organization, plan: Plan | Entitlements, since: datetime) -> int:
    """Usage already metered but not in the ledger yet (attempts still running, inference of the open hour)."""
    rows = (UsageSegment.objects.filter(organization=organization, ledger_entry__isnull=True, ended_at__gte=since,
                                        exclusion__isnull=True)
            .values("device_class", "device_count").annotate(seconds=Sum("seconds")))
    inference = (InferenceUsage.objects.filter(organization=organization, ledger_entry__isnull=True, ended_at__gte=since)
                 .values("device_class", "device_count").annotate(seconds=Sum("seconds")))
    return sum(price(row, plan) for row in rows) + sum(price(row, plan) for row in inference)


def period_usage(*, organization: Organization, when: datetime | None = None,
                 entitlements: Entitlements | None = None) -> PeriodUsage:
    """The period's usage against the allowance and the cap; `entitlements`
    already read for this request or claim saves reading the plan again."""
    entitlements = entitlements or entitlements_of(organization=organization)
    period = period_for(entitlements, when)
    ledger = LedgerEntry.objects.filter(organization=organization, period_start=period.start, billable=True).aggregate(
        total=Sum("amount_micros"))["total"] or 0
    used = ledger + unrolled_micros(organization=organization, plan=entitlements, since=period.start)
    cap = entitlements.spend_cap_micros
    if entitlements.plan_is_free:
        cap = 0  # no payment method: the allowance is all there is
    return PeriodUsage(period=period, used_micros=used, included_micros=entitlements.included_compute_micros,
                       cap_micros=cap)


# --- the checks jobs ask for -------------------------------------------------------------

def spend_capped(*, organization: Organization, entitlements: Entitlements) -> bool:
    """A running attempt's check after each heartbeat: is the period's spend cap
    (on the free plan, its allowance) reached? The account's cap, status and plan
    are read now, as for a new job (a cap lowered or raised, a plan changed by a
    webhook, apply at the next heartbeat); the usage is priced at the rates in
    `entitlements`, read once when the attempt started, so the plan's rate table
    is not read again every beat."""
    current = _entitlements(account_for(organization=organization), rates=entitlements.rates)
    return period_usage(organization=organization, entitlements=current).is_capped


def check_can_start_job(*, organization: Organization, kind: str,
                        entitlements: Entitlements | None = None) -> Entitlements:
    """402 when the subscription is past due or the spend cap / free allowance
    is used up; 403 when the plan does not include this kind of job. Reads the
    plan only when the caller has no `entitlements` for this request yet."""
    entitlements = entitlements or entitlements_of(organization=organization)
    if entitlements.blocked_status:
        raise PaymentRequired(f"The subscription is {entitlements.blocked_status}: update the payment method on "
                              "the Billing page to start new jobs. Running jobs finish.", code="payment_past_due")
    kinds, plan_name = entitlements.allowed_job_kinds, entitlements.plan_name
    if kinds and kind not in kinds:
        raise ApplicationError(f"The {plan_name} plan does not include {kind} jobs (it includes "
                               f"{', '.join(kinds)}); upgrade on the Billing page.",
                               code="plan_limit", status=403, fields={"kind": [f"not in the {plan_name} plan"]})
    usage = period_usage(organization=organization, entitlements=entitlements)
    if usage.is_capped:
        if entitlements.plan_is_free:
            raise PaymentRequired(f"The free plan's ${dollars(usage.included_micros)} of compute this period is used up "
                                  f"(resets {usage.period.end:%Y-%m-%d}); upgrade on the Billing page.", code="allowance_used")
        raise PaymentRequired(f"The monthly spend cap of ${dollars(usage.cap_micros)} is reached (spent "
                              f"${dollars(usage.overage_micros)} beyond the included compute); raise it on the Billing page.",
                              code="spend_cap_reached")
    return entitlements


def check_can_infer(*, organization: Organization) -> Entitlements:
    """Try-it and chat completions: 402 when the subscription is past due or the period's spend cap (the
    free plan's allowance) is used up, as for a new job; every plan includes inference."""
    entitlements = entitlements_of(organization=organization)
    if entitlements.blocked_status:
        raise PaymentRequired(f"The subscription is {entitlements.blocked_status}: update the payment method on "
                              "the Billing page to run models.", code="payment_past_due")
    usage = period_usage(organization=organization, entitlements=entitlements)
    if usage.is_capped:
        if entitlements.plan_is_free:
            raise PaymentRequired(f"The free plan's ${dollars(usage.included_micros)} of compute this period is used up "
                                  f"(resets {usage.period.end:%Y-%m-%d}); upgrade on the Billing page.", code="allowance_used")
        raise PaymentRequired(f"The monthly spend cap of ${dollars(usage.cap_micros)} is reached; raise it on the "
                              "Billing page.", code="spend_cap_reached")
    return entitlements


# --- changes customers make -----------------------------------------------------------------

def _require_admin(actor: Actor) -> None:
    if not actor.has_role(Role.ADMIN):
        raise PermissionDenied("Only an admin or an owner can change billing.")


def spend_cap_set(*, organization: Organization, actor: Actor, cap_cents: int | None) -> BillingAccount:
    _require_admin(actor)
    if cap_cents is not None and (isinstance(cap_cents, bool) or not isinstance(cap_cents, int) or not 0 <= cap_cents <= 10**9):
        raise field_error("spend_cap_cents", "a whole number of cents between 0 and 1000000000, or null for no cap")
    with transaction.atomic():
        account = account_for(organization=organization)
        previous = BillingAccount.objects.select_for_update().values_list("spend_cap_cents", flat=True).get(pk=account.pk)
        BillingAccount.objects.filter(pk=account.pk).update(spend_cap_cents=cap_cents, updated_at=timezone.now())
        if previous != cap_cents:
            audit_record(organization=organization, action=AuditAction.SPEND_CAP_CHANGED, actor=actor,
                         data={"from_cents": previous, "to_cents": cap_cents})
    account.refresh_from_db()
    return account


def _ensure_customer(account: BillingAccount, actor: Actor) -> str:
    if account.stripe_customer_id:
        return account.stripe_customer_id
    email = actor.user.email if actor.user else ""
    customer_id = gateway.create_customer(organization_id=account.organization_id, name=account.organization.name, email=email)
    BillingAccount.objects.filter(pk=account.pk, stripe_customer_id="").update(stripe_customer_id=customer_id)
    account.refresh_from_db()
    return account.stripe_customer_id


def checkout_start(*, organization: Organization, actor: Actor, plan_slug: str, success_url: str, cancel_url: str) -> str:
    """A Stripe Checkout URL for subscribing to (or switching to) a paid plan.
    The subscription only changes when Stripe's webhook says it did."""
    _require_admin(actor)
    plan = Plan.objects.filter(slug=plan_slug, is_active=True).first()
    if plan is None:
        raise ApplicationError(f"No active plan '{plan_slug}'.", code="not_found", status=404,
                               fields={"plan": [f"No active plan '{plan_slug}'."]})
    if not plan.is_paid:
        raise field_error("plan", "The free plan needs no checkout; cancel the subscription in the customer portal instead.")
    if not gateway.enabled():
        raise gateway.BillingNotConfigured()
    if not (plan.stripe_base_price_id and plan.stripe_metered_price_id):
        raise ApplicationError(f"The {plan.name} plan is not synced to Stripe yet (operators: manage.py sync_plans).",
                               code="plan_not_synced", status=409)
    account = account_for(organization=organization)
    if account.stripe_subscription_id and account.status not in ("canceled", "none"):
        raise ApplicationError("This organization already has a subscription: change plans in the customer portal.",
                               code="already_subscribed", status=409)
    customer = _ensure_customer(account, actor)
    return gateway.create_checkout_session(customer_id=customer, organization_id=organization.pk, plan=plan,
                                           success_url=success_url, cancel_url=cancel_url)


def portal_start(*, organization: Organization, actor: Actor, return_url: str) -> str:
    _require_admin(actor)
    if not gateway.enabled():
        raise gateway.BillingNotConfigured()
    account = account_for(organization=organization)
    if not account.stripe_customer_id:
        raise ApplicationError("There is no Stripe customer for this organization yet: subscribe to a plan first.",
                               code="no_customer", status=409)
    return gateway.create_portal_session(customer_id=account.stripe_customer_id, return_url=return_url)


def plan_sync(*, plan: Plan) -> dict:
    """Operators: create or update the plan's Stripe objects (idempotent)."""
    result = gateway.sync_plan(plan)
    Plan.objects.filter(pk=plan.pk).update(
        stripe_product_id=result["product"], stripe_base_price_id=result["base_price"], stripe_meter_id=result["meter"],
        stripe_meter_event_name=result["event_name"], stripe_metered_price_id=result["metered_price"],
        stripe_synced_at=timezone.now())
    return result
