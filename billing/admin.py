"""Operators: plans (with a Stripe sync action), accounts, usage segments and
the ledger with its exports (read-only), Stripe events (re-process),
reconciliations, invoices."""
from django.contrib import admin, messages

from core.admin import ReadOnlyAdmin

from . import gateway, services
from .models import (BillingAccount, EventStatus, InferenceUsage, Invoice, LedgerEntry, Plan, PlanRate, Reconciliation,
                     SpendAlert, StripeEvent,
                     UsageSegment)


class PlanRateInline(admin.TabularInline):
    model = PlanRate
    extra = 1


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "kind", "is_active", "monthly_price_cents", "included_compute_cents", "max_concurrent_jobs",
                    "queue", "queue_priority", "stripe_synced_at")
    list_filter = ("kind", "is_active")
    inlines = [PlanRateInline]
    readonly_fields = ("stripe_product_id", "stripe_base_price_id", "stripe_meter_id", "stripe_meter_event_name",
                       "stripe_metered_price_id", "stripe_synced_at")
    actions = ["sync_to_stripe", "archive"]

    @admin.action(description="Sync to Stripe (product, prices, meter) — idempotent")
    def sync_to_stripe(self, request, queryset):
        if not gateway.enabled():
            self.message_user(request, "Stripe is not configured (STRIPE_SECRET_KEY).", messages.ERROR)
            return
        for plan in queryset:
            try:
                result = services.plan_sync(plan=plan)
            except Exception as exc:  # shown to the operator, per plan
                self.message_user(request, f"{plan}: {exc}", messages.ERROR)
            else:
                self.message_user(request, f"{plan}: synced ({result['metered_price']}).")

    @admin.action(description="Archive (no new subscribers)")
    def archive(self, request, queryset):
        self.message_user(request, f"{queryset.update(is_active=False)} plan(s) archived.")


@admin.register(BillingAccount)
class BillingAccountAdmin(admin.ModelAdmin):
    list_display = ("organization", "plan", "status", "current_period_end", "spend_cap_cents", "stripe_customer_id")
    list_filter = ("status", "plan")
    search_fields = ("organization__name", "organization__slug", "stripe_customer_id", "stripe_subscription_id")
    list_select_related = ("organization", "plan")
    # Subscription state changes only through verified Stripe webhooks.
    readonly_fields = ("organization", "stripe_customer_id", "stripe_subscription_id", "status", "current_period_start",
                       "current_period_end", "cancel_at_period_end", "subscription_event_at")


@admin.register(UsageSegment)
class UsageSegmentAdmin(ReadOnlyAdmin):
    """Usage as metered (immutable); LedgerEntry is what it is priced as."""

    list_display = ("id", "organization", "job", "attempt", "device_class", "device_count", "seconds", "started_at", "ended_at",
                    "ledger_entry")
    list_filter = ("device_class", "created_at")
    search_fields = ("organization__name", "organization__slug", "job__id")
    list_select_related = ("organization", "job")


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    list_display = ("id", "organization", "usage_kind", "job", "attempt", "device_class", "seconds", "amount_micros",
                    "billable", "period_start", "export_status", "export_attempts", "exported_at")
    list_filter = ("usage_kind", "export_status", "billable", "device_class")
    search_fields = ("organization__slug", "job__id", "stripe_customer_id")
    list_select_related = ("organization", "job")


@admin.register(InferenceUsage)
class InferenceUsageAdmin(ReadOnlyAdmin):
    """Inference requests' worker time as metered (immutable); hourly ledger entries price it."""

    list_display = ("id", "organization", "reference", "source_key", "device_class", "seconds", "ended_at", "ledger_entry")
    list_filter = ("device_class",)
    search_fields = ("organization__slug", "reference", "source_key")
    list_select_related = ("organization",)


@admin.register(StripeEvent)
class StripeEventAdmin(admin.ModelAdmin):
    list_display = ("stripe_id", "type", "status", "created", "received_at", "processed_at", "attempts", "note")
    list_filter = ("status", "type")
    search_fields = ("stripe_id",)
    readonly_fields = [f.name for f in StripeEvent._meta.fields]
    actions = ["reprocess"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Re-process (handlers are idempotent)")
    def reprocess(self, request, queryset):
        from .webhooks import process

        done = {}
        for event in queryset:
            StripeEvent.objects.filter(pk=event.pk).update(status=EventStatus.RECEIVED)
            done[event.stripe_id] = process(event.pk)
        self.message_user(request, ", ".join(f"{k}: {v}" for k, v in done.items()))


@admin.register(Reconciliation)
class ReconciliationAdmin(ReadOnlyAdmin):
    list_display = ("organization", "period_start", "period_end", "local_micros", "stripe_micros", "matches", "checked_at", "note")
    list_filter = ("matches",)


@admin.register(Invoice)
class InvoiceAdmin(ReadOnlyAdmin):
    list_display = ("stripe_invoice_id", "organization", "status", "amount_due_cents", "amount_paid_cents", "stripe_created")
    list_filter = ("status",)


@admin.register(SpendAlert)
class SpendAlertAdmin(ReadOnlyAdmin):
    list_display = ("organization", "period_start", "threshold", "spent_cents", "cap_cents", "created_at")
