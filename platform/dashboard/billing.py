"""The Billing page: plan, usage this period against the allowance, spend
against the cap, upgrade / manage, invoices, per-day and per-job usage; and
the launch form's quote."""
from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal, InvalidOperation

from django.contrib import messages
from django.shortcuts import redirect
from django.views import View

from billing import gateway, selectors, services
from core.errors import ApplicationError

from .views import OrganizationPageMixin

MAX_CHART_DAYS = 62


def day_chart(usage: dict) -> dict | None:
    """Cost per day over the whole period (days without usage are zero, so one
    job's day is one bar among the period's), for static/js/charts.js."""
    if not usage["per_day"]:
        return None
    spent = {d["date"]: d for d in usage["per_day"]}
    first = usage["period_start"].date()
    last = max((usage["period_end"] - timedelta(microseconds=1)).date(), date.fromisoformat(max(spent)))
    days = []
    for n in range(min((last - first).days + 1, MAX_CHART_DAYS)):
        day = (first + timedelta(days=n)).isoformat()
        row = spent.get(day)
        days.append({"date": day, "usd": float(row["usd"]) if row else 0.0, "seconds": row["seconds"] if row else 0.0})
    return {"days": days}


def usage_meters(usage: dict) -> dict:
    """Percentages of the included compute and of the spend cap used (Billing and
    Overview). A zero cap (the free plan: no payment method) is no meter: nothing
    is charged beyond the included compute."""
    no_overage = usage["spend_cap_usd"] is not None and Decimal(usage["spend_cap_usd"]) == 0
    return {"included_pct": round(100 * usage["included_fraction"], 1) if usage["included_fraction"] is not None else None,
            "cap_pct": round(100 * min(1.0, usage["cap_fraction"]), 1) if usage["cap_fraction"] is not None and not no_overage else None,
            "no_overage": no_overage}


class BillingView(OrganizationPageMixin, View):
    section = "billing"

    def get(self, request, slug):
        account = services.account_for(organization=self.organization)
        usage = selectors.usage_summary(organization=self.organization)
        return self.render_page(request, "dashboard/billing.html", {
            "account": account, "plans": list(selectors.plan_list()), "usage": usage, "chart": day_chart(usage), **usage_meters(usage),
            "invoices": list(selectors.invoice_list(organization=self.organization)[:24]),
            "billing_configured": gateway.enabled(), "checkout_done": request.GET.get("checkout") == "done"})


class BillingCheckoutView(OrganizationPageMixin, View):
    def post(self, request, slug):
        base = request.build_absolute_uri(f"/o/{slug}/billing")
        url, error = self.attempt(request, lambda: services.checkout_start(
            organization=self.organization, actor=self.actor, plan_slug=request.POST.get("plan", ""),
            success_url=f"{base}?checkout=done", cancel_url=base))
        return redirect(url) if url else redirect("dashboard:billing", slug=slug)


class BillingPortalView(OrganizationPageMixin, View):
    def post(self, request, slug):
        url, error = self.attempt(request, lambda: services.portal_start(
            organization=self.organization, actor=self.actor, return_url=request.build_absolute_uri(f"/o/{slug}/billing")))
        return redirect(url) if url else redirect("dashboard:billing", slug=slug)


class BillingSpendCapView(OrganizationPageMixin, View):
    def post(self, request, slug):
        raw = (request.POST.get("spend_cap_usd") or "").strip()
        try:
            cap = None if raw == "" else int((Decimal(raw) * 100).to_integral_value())
        except InvalidOperation:
            messages.error(request, f"Spend cap: '{raw}' is not an amount in dollars (e.g. 50 or 12.50).")
            return redirect("dashboard:billing", slug=slug)
        _account, error = self.attempt(request, lambda: services.spend_cap_set(
            organization=self.organization, actor=self.actor, cap_cents=cap))
        if not error:
            messages.success(request, "Spend cap removed." if cap is None else f"Spend cap set to ${cap / 100:.2f} a month.")
        return redirect("dashboard:billing", slug=slug)


class JobQuoteView(OrganizationPageMixin, View):
    """htmx: the launch form's fields → a quote, shown under the form."""

    def post(self, request, slug):
        from jobs.quotes import quote
        from tenancy.entitlements import request_entitlements

        from .jobs import launch_form, launch_submit

        form = launch_form(self.organization, request.POST)
        context = {}
        if form is None:
            context["error"] = "The catalog has no chat model to fine-tune."
        elif not form.is_valid():
            context["error"] = "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items())
        else:
            try:
                entitlements = request_entitlements(request, organization=self.organization)  # one read for both
                job, _ = launch_submit(form.kind)(organization=self.organization, actor=self.actor, dry_run=True,
                                                  entitlements=entitlements, **form.service_kwargs())
                context["quote"] = quote(job, entitlements=entitlements)
            except ApplicationError as error:
                context["error"] = error.message
        return self.render_page(request, "dashboard/partials/quote.html", context)
