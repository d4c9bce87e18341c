"""Plans (operators), each organization's billing account, metering (usage
segments and their exclusions: billing/metering.py writes and reads them), the
usage ledger (its rows are also the meter-event outbox), Stripe events,
invoices, reconciliations and spend alerts.

Money: cents for prices and caps; the ledger in micro-dollars (1e-6 USD), so a
per-second GPU rate like $0.000972 is exact. Stripe meters receive micro-dollars."""
from __future__ import annotations

from decimal import Decimal
from functools import cached_property

from django.db import models

from tenancy.entitlements import device_rate

MICROS_PER_CENT = 10_000


class PlanKind(models.TextChoices):
    FREE = "free", "Free"
    SUBSCRIPTION = "subscription", "Subscription"
    PAYG = "payg", "Pay as you go"


class Plan(models.Model):
    slug = models.SlugField(unique=True)
    name = models.CharField(max_length=60)
    kind = models.CharField(max_length=20, choices=PlanKind.choices)
    is_active = models.BooleanField(default=True, help_text="Archived plans keep their subscribers but take no new ones.")
    sort_order = models.PositiveSmallIntegerField(default=0)
    monthly_price_cents = models.PositiveIntegerField(default=0)
    currency = models.CharField(max_length=3, default="usd")
    included_compute_cents = models.PositiveIntegerField(default=0, help_text="Compute included each period, at this plan's rates.")
    # Limits (these replace the settings defaults earlier issues used).
    max_concurrent_jobs = models.PositiveSmallIntegerField(default=1)
    queue = models.CharField(max_length=40, blank=True, default="",
                             help_text="Celery queue its jobs go to; empty: the installation's default (LATHE_DEFAULT_QUEUE).")
    queue_priority = models.PositiveSmallIntegerField(default=5, help_text="0 (first) … 9")
    max_dataset_bytes = models.BigIntegerField(default=100 * 1000 * 1000)
    storage_quota_bytes = models.BigIntegerField(default=1000 * 1000 * 1000)
    api_rate = models.CharField(max_length=20, default="1200/min", help_text="DRF rate, e.g. 1200/min")
    allowed_job_kinds = models.JSONField(default=list, blank=True, help_text="Empty: every kind.")
    # Stripe objects, written by sync_plans.
    stripe_product_id = models.CharField(max_length=100, blank=True)
    stripe_base_price_id = models.CharField(max_length=100, blank=True)
    stripe_meter_id = models.CharField(max_length=100, blank=True)
    stripe_meter_event_name = models.CharField(max_length=100, blank=True)
    stripe_metered_price_id = models.CharField(max_length=100, blank=True)
    stripe_synced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("sort_order", "monthly_price_cents")

    def __str__(self) -> str:
        return self.name

    @property
    def is_paid(self) -> bool:
        return self.kind != PlanKind.FREE

    @cached_property
    def rate_table(self) -> dict[str, Decimal]:
        """Read once per plan instance: ledgers and usage pages price many rows."""
        return {r.device_class: r.usd_per_second for r in self.rates.all()}

    def rate_for(self, device_class: str) -> Decimal:
        """USD per device-second: the exact class, else its family default ('nvidia-*'), else 'cpu'."""
        return device_rate(self.rate_table, device_class)


class PlanRate(models.Model):
    plan = models.ForeignKey(Plan, on_delete=models.CASCADE, related_name="rates")
    device_class = models.CharField(max_length=40, help_text="cpu, nvidia-h100, … or nvidia-* for any other GPU")
    usd_per_second = models.DecimalField(max_digits=12, decimal_places=8)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["plan", "device_class"], name="billing_rate_unique")]

    def __str__(self) -> str:
        return f"{self.device_class}: ${self.usd_per_second}/s"


class SubscriptionStatus(models.TextChoices):
    NONE = "none", "No subscription"
    ACTIVE = "active", "Active"
    TRIALING = "trialing", "Trialing"
    PAST_DUE = "past_due", "Past due"
    UNPAID = "unpaid", "Unpaid"
    INCOMPLETE = "incomplete", "Incomplete"
    CANCELED = "canceled", "Canceled"


BLOCKING_STATUSES = (SubscriptionStatus.PAST_DUE, SubscriptionStatus.UNPAID)


class BillingAccount(models.Model):
    organization = models.OneToOneField("tenancy.Organization", on_delete=models.CASCADE, related_name="billing")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="accounts")
    stripe_customer_id = models.CharField(max_length=100, blank=True, db_index=True)
    stripe_subscription_id = models.CharField(max_length=100, blank=True, db_index=True)
    status = models.CharField(max_length=20, choices=SubscriptionStatus.choices, default=SubscriptionStatus.NONE)
    current_period_start = models.DateTimeField(null=True, blank=True)
    current_period_end = models.DateTimeField(null=True, blank=True)
    cancel_at_period_end = models.BooleanField(default=False)
    # The Stripe `created` time of the newest event applied: older ones arriving later are ignored.
    subscription_event_at = models.DateTimeField(null=True, blank=True)
    spend_cap_cents = models.PositiveIntegerField(null=True, blank=True, help_text="Monthly spend cap; empty: none.")
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"billing of {self.organization}"

    @property
    def spend_cap_usd(self) -> str | None:
        return f"{self.spend_cap_cents / 100:.2f}" if self.spend_cap_cents is not None else None

    @property
    def is_blocked(self) -> bool:
        return self.status in BLOCKING_STATUSES


class ExportStatus(models.TextChoices):
    NOT_NEEDED = "not_needed", "Not exported (no metered subscription)"
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    TOO_OLD = "too_old", "Too old for Stripe: handle manually"


class UsageKind(models.TextChoices):
    JOB = "job", "Jobs"
    INFERENCE = "inference", "Inference"


class LedgerEntry(models.Model):
    """Immutable usage rolled up from a job attempt's usage segments (kind `job`), or from an hour of an
    organization's inference requests (kind `inference`, no job): seconds, device, rate and amount. Also
    the outbox row of its Stripe meter event (identifier = 'lathe-ledger-<id>', the same idempotency key)."""

    organization = models.ForeignKey("tenancy.Organization", on_delete=models.PROTECT, related_name="ledger_entries")
    usage_kind = models.CharField(max_length=20, choices=UsageKind.choices, default=UsageKind.JOB, db_index=True)
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.PROTECT, related_name="ledger_entries",
                            help_text="The job whose attempt this is; empty for inference.")
    attempt = models.PositiveSmallIntegerField(help_text="The job's attempt; 0 for inference.")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="+")
    device_class = models.CharField(max_length=40)
    device_count = models.PositiveSmallIntegerField(default=1)
    seconds = models.DecimalField(max_digits=14, decimal_places=3)
    usd_per_second = models.DecimalField(max_digits=12, decimal_places=8)
    amount_micros = models.BigIntegerField(help_text="seconds × devices × rate, in micro-dollars")
    billable = models.BooleanField(default=True)
    note = models.CharField(max_length=200, blank=True)
    period_start = models.DateTimeField(db_index=True)
    period_end = models.DateTimeField()
    usage_started_at = models.DateTimeField()
    usage_ended_at = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    export_status = models.CharField(max_length=20, choices=ExportStatus.choices, default=ExportStatus.NOT_NEEDED, db_index=True)
    export_attempts = models.PositiveSmallIntegerField(default=0)
    export_error = models.TextField(blank=True)
    exported_at = models.DateTimeField(null=True, blank=True)
    stripe_customer_id = models.CharField(max_length=100, blank=True)
    stripe_meter_event_name = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ("id",)
        verbose_name_plural = "ledger entries"
        indexes = [models.Index(fields=["organization", "period_start"])]

    @property
    def meter_identifier(self) -> str:
        return f"lathe-ledger-{self.pk}"


class EventStatus(models.TextChoices):
    RECEIVED = "received", "Received"
    PROCESSED = "processed", "Processed"
    IGNORED = "ignored", "Ignored"
    FAILED = "failed", "Failed"


class StripeEvent(models.Model):
    stripe_id = models.CharField(max_length=100, unique=True)
    type = models.CharField(max_length=100, db_index=True)
    created = models.DateTimeField(help_text="Stripe's `created` of the event")
    livemode = models.BooleanField(default=False)
    payload = models.JSONField()
    status = models.CharField(max_length=20, choices=EventStatus.choices, default=EventStatus.RECEIVED, db_index=True)
    note = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    received_at = models.DateTimeField(auto_now_add=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-received_at",)

    def __str__(self) -> str:
        return f"{self.type} {self.stripe_id}"


class Invoice(models.Model):
    organization = models.ForeignKey("tenancy.Organization", on_delete=models.CASCADE, related_name="invoices")
    stripe_invoice_id = models.CharField(max_length=100, unique=True)
    number = models.CharField(max_length=100, blank=True)
    status = models.CharField(max_length=20)
    currency = models.CharField(max_length=3, default="usd")
    amount_due_cents = models.BigIntegerField(default=0)
    amount_paid_cents = models.BigIntegerField(default=0)
    hosted_invoice_url = models.URLField(max_length=500, blank=True)
    invoice_pdf = models.URLField(max_length=500, blank=True)
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    stripe_created = models.DateTimeField()
    updated_from_event_at = models.DateTimeField()

    class Meta:
        ordering = ("-stripe_created",)


class Reconciliation(models.Model):
    """A closed period's local ledger total against Stripe's meter summary."""

    organization = models.ForeignKey("tenancy.Organization", on_delete=models.CASCADE, related_name="reconciliations")
    period_start = models.DateTimeField()
    period_end = models.DateTimeField()
    local_micros = models.BigIntegerField()
    stripe_micros = models.BigIntegerField(null=True, blank=True)
    matches = models.BooleanField(default=False)
    note = models.TextField(blank=True)
    checked_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ("-period_start",)
        constraints = [models.UniqueConstraint(fields=["organization", "period_start"], name="billing_reconciliation_unique")]


class SpendAlert(models.Model):
    organization = models.ForeignKey("tenancy.Organization", on_delete=models.CASCADE, related_name="spend_alerts")
    period_start = models.DateTimeField()
    threshold = models.PositiveSmallIntegerField(help_text="percent of the spend cap")
    spent_cents = models.BigIntegerField()
    cap_cents = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-created_at",)
        constraints = [models.UniqueConstraint(fields=["organization", "period_start", "threshold"], name="billing_alert_once")]


# --- metering (billing/metering.py) -----------------------------------------------------

class UsageSegment(models.Model):
    """Immutable: one per heartbeat (and one at the end), written only under the
    job's current lease (jobs.lifecycle.record_usage → metering.record_segment),
    so a fenced-off worker bills nothing. Moved here from the jobs app; its table
    kept its name (migrations billing 0003 / jobs 0008 changed the state only)."""

    organization = models.ForeignKey("tenancy.Organization", on_delete=models.PROTECT, related_name="usage_segments")
    job = models.ForeignKey("jobs.Job", on_delete=models.PROTECT, related_name="usage_segments")
    attempt = models.PositiveSmallIntegerField()
    lease_token = models.UUIDField()
    device_class = models.CharField(max_length=40)
    device_count = models.PositiveSmallIntegerField(default=1)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField()
    seconds = models.DecimalField(max_digits=12, decimal_places=3)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    ledger_entry = models.ForeignKey(LedgerEntry, null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="segments", help_text="Set once, when the attempt's usage is rolled up.")

    class Meta:
        db_table = "jobs_usagesegment"
        ordering = ("id",)
        indexes = [models.Index(fields=["organization", "created_at"])]


class UsageExclusion(models.Model):
    """Marks a usage segment as not billable (work lost to infrastructure and
    redone), so it never reaches the ledger as billable."""

    segment = models.OneToOneField(UsageSegment, on_delete=models.CASCADE, related_name="exclusion")
    reason = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)


class InferenceUsage(models.Model):
    """Immutable: the worker time of one inference request (model load included when it was cold), written by
    the inference worker in the transaction that finishes the request (serving.tasks → metering.record_inference).
    Rolled up per organization, device and closed hour into `inference` ledger entries (ledger.rollup_inference_usage).
    The request is named by `reference` (serving sits above billing: no foreign key)."""

    organization = models.ForeignKey("tenancy.Organization", on_delete=models.PROTECT, related_name="inference_usage")
    reference = models.CharField(max_length=100, unique=True, help_text="inference-<request id>")
    source_key = models.CharField(max_length=200)
    device_class = models.CharField(max_length=40)
    device_count = models.PositiveSmallIntegerField(default=1)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(db_index=True)
    seconds = models.DecimalField(max_digits=12, decimal_places=3)
    created_at = models.DateTimeField(auto_now_add=True)
    ledger_entry = models.ForeignKey(LedgerEntry, null=True, blank=True, on_delete=models.PROTECT,
                                     related_name="inference_usage", help_text="Set once, when its hour is rolled up.")

    class Meta:
        ordering = ("id",)
        verbose_name_plural = "inference usage"
        indexes = [models.Index(fields=["organization", "ended_at"])]
