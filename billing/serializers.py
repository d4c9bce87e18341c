from decimal import Decimal

from rest_framework import serializers

from core.serializers import QuerySerializer, RequestSerializer

from .models import BillingAccount, Invoice, Plan, PlanRate


class PlanRateSerializer(serializers.ModelSerializer):
    class Meta:
        model = PlanRate
        fields = ("device_class", "usd_per_second")
        read_only_fields = fields


class PlanSerializer(serializers.ModelSerializer):
    rates = PlanRateSerializer(many=True, read_only=True)
    available = serializers.SerializerMethodField()

    class Meta:
        model = Plan
        fields = ("slug", "name", "kind", "monthly_price_cents", "currency", "included_compute_cents", "max_concurrent_jobs",
                  "queue_priority", "max_dataset_bytes", "storage_quota_bytes", "api_rate", "allowed_job_kinds", "rates",
                  "available")
        read_only_fields = fields

    def get_available(self, plan) -> bool:
        """Can be subscribed to here (synced to Stripe and billing configured)."""
        from . import gateway

        return plan.kind == "free" or bool(gateway.enabled() and plan.stripe_base_price_id and plan.stripe_metered_price_id)


class SubscriptionSerializer(serializers.ModelSerializer):
    plan = PlanSerializer(read_only=True)
    billing_configured = serializers.SerializerMethodField()

    class Meta:
        model = BillingAccount
        fields = ("plan", "status", "current_period_start", "current_period_end", "cancel_at_period_end", "spend_cap_cents",
                  "billing_configured")
        read_only_fields = fields

    def get_billing_configured(self, account) -> bool:
        from . import gateway

        return gateway.enabled()


class BlankAsNullURLField(serializers.URLField):
    """Stripe leaves an invoice's links empty until it finalizes it: null then, never "" under `format: uri`."""

    def __init__(self, **kwargs):
        super().__init__(read_only=True, allow_null=True, **kwargs)

    def to_representation(self, value):
        return value or None


class InvoiceSerializer(serializers.ModelSerializer):
    hosted_invoice_url = BlankAsNullURLField(help_text="Stripe's page for the invoice; null until it is finalized")
    invoice_pdf = BlankAsNullURLField(help_text="The PDF; null until the invoice is finalized")

    class Meta:
        model = Invoice
        fields = ("stripe_invoice_id", "number", "status", "currency", "amount_due_cents", "amount_paid_cents",
                  "hosted_invoice_url", "invoice_pdf", "period_start", "period_end", "stripe_created")
        read_only_fields = fields


class UsageDaySerializer(serializers.Serializer):
    date = serializers.CharField()
    seconds = serializers.FloatField()
    usd = serializers.CharField()


class UsageJobSerializer(serializers.Serializer):
    job_id = serializers.IntegerField()
    name = serializers.CharField()
    kind = serializers.CharField()
    seconds = serializers.FloatField()
    usd = serializers.CharField()
    running = serializers.BooleanField(help_text="An attempt of this job is still running: its seconds so far are included.")
    running_seconds = serializers.FloatField(help_text="Of `seconds`, those metered by the attempt still running.")


class UsageInferenceSerializer(serializers.Serializer):
    seconds = serializers.FloatField(help_text="Worker seconds of try-it and chat-completion requests (cold loads included)")
    usd = serializers.CharField()
    requests = serializers.IntegerField()


class UsageSerializer(serializers.Serializer):
    period_start = serializers.DateTimeField()
    period_end = serializers.DateTimeField()
    plan = serializers.CharField()
    used_usd = serializers.CharField()
    included_usd = serializers.CharField()
    included_used_usd = serializers.CharField()
    overage_usd = serializers.CharField()
    spend_cap_usd = serializers.CharField(allow_null=True)
    cap_fraction = serializers.FloatField(allow_null=True)
    included_fraction = serializers.FloatField(allow_null=True, help_text="Share of the included compute used")
    not_billed_seconds = serializers.FloatField(help_text="Usage lost to infrastructure (redone after a lost worker)")
    per_day = UsageDaySerializer(many=True)
    per_job = UsageJobSerializer(many=True)
    ledger_entries = serializers.IntegerField()
    jobs_usd = serializers.CharField(help_text="This period's job usage (the per_job rows together)")
    inference = UsageInferenceSerializer(help_text="This period's inference: its own line beside the jobs")


class SpendCapSerializer(RequestSerializer):
    spend_cap_usd = serializers.DecimalField(max_digits=12, decimal_places=2, allow_null=True, min_value=0,
                                             max_value=Decimal("9999999.99"),
                                             help_text="Monthly cap on charges beyond the included compute, as a string "
                                                       "(\"25.00\"); null: none")


class UsageQuerySerializer(QuerySerializer):
    period = serializers.ChoiceField(choices=["current", "previous"], default="current")


class CheckoutSerializer(RequestSerializer):
    plan = serializers.SlugField()
    success_url = serializers.URLField(required=False)
    cancel_url = serializers.URLField(required=False)


class RedirectSerializer(serializers.Serializer):
    url = serializers.URLField()


class QuoteSerializer(serializers.Serializer):
    device_class = serializers.CharField(help_text="Where the queue's jobs ran last (cpu until one has run)")
    method = serializers.CharField(help_text="Whose measured throughput applies: full | lora (fine-tunes), int8, the "
                                             "prune method, distill")
    tokens = serializers.IntegerField(help_text="The work: the dataset's real tokens (each row truncated at max_length) × "
                                                "epochs; compression: its evaluation and training passes")
    trained_tokens = serializers.IntegerField(allow_null=True, help_text=(
        "Chat fine-tunes: the tokens trained on (assistant replies with weight 1, after the max_length cut) × epochs; "
        "null for other kinds"))
    estimated_seconds = serializers.IntegerField(help_text="tokens ÷ the throughput measured on recent jobs of this method "
                                                           "on this device class (newest weighted most) + their startup")
    low_seconds = serializers.IntegerField(help_text="A 90 % range from the spread of those measurements")
    high_seconds = serializers.IntegerField()
    history_jobs = serializers.IntegerField(help_text="How many past jobs the throughput comes from; 0: the stated default")
    usd_per_second = serializers.CharField()
    estimated_cost_usd = serializers.CharField()
    included_remaining_usd = serializers.CharField()
    billable_usd = serializers.CharField()
    plan = serializers.CharField()
    basis = serializers.CharField(help_text="What the estimate rests on, in words")
