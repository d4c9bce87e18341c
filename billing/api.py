from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response

from core.api import OrganizationAPIView

from . import selectors, services
from .serializers import (
    CheckoutSerializer,
    InvoiceSerializer,
    PlanSerializer,
    RedirectSerializer,
    SpendCapSerializer,
    SubscriptionSerializer,
    UsageQuerySerializer,
    UsageSerializer,
)


def _billing_page(organization) -> str:
    return f"{settings.SITE_URL.rstrip('/')}/o/{organization.slug}/billing"


class PlanListApi(OrganizationAPIView):
    serializer_class = PlanSerializer
    pagination_class = None

    @extend_schema(operation_id="plans_list", responses=PlanSerializer(many=True))
    def get(self, request):
        return Response(PlanSerializer(selectors.plan_list(), many=True).data)


class BillingPlanApi(OrganizationAPIView):
    serializer_class = PlanSerializer

    @extend_schema(operation_id="billing_plan", responses=PlanSerializer, description="The organization's plan and its limits.")
    def get(self, request):
        return Response(PlanSerializer(services.plan_for(organization=self.organization)).data)


class BillingSubscriptionApi(OrganizationAPIView):
    serializer_class = SubscriptionSerializer

    @extend_schema(operation_id="billing_subscription", responses=SubscriptionSerializer)
    def get(self, request):
        return Response(SubscriptionSerializer(services.account_for(organization=self.organization)).data)


class BillingUsageApi(OrganizationAPIView):
    serializer_class = UsageSerializer

    @extend_schema(operation_id="billing_usage", responses=UsageSerializer, parameters=[UsageQuerySerializer])
    def get(self, request):
        query = UsageQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        previous = query.validated_data["period"] == "previous"
        return Response(UsageSerializer(selectors.usage_summary(organization=self.organization, previous=previous)).data)


class BillingInvoiceListApi(OrganizationAPIView):
    serializer_class = InvoiceSerializer
    pagination_class = None

    @extend_schema(operation_id="billing_invoices", responses=InvoiceSerializer(many=True),
                   description="The organization's invoices, newest first (the last 100).")
    def get(self, request):
        return Response(InvoiceSerializer(selectors.invoice_list(organization=self.organization)[:100], many=True).data)


class BillingSpendCapApi(OrganizationAPIView):
    serializer_class = SubscriptionSerializer

    @extend_schema(operation_id="billing_spend_cap", request=SpendCapSerializer, responses=SubscriptionSerializer,
                   description="Alerts at 50/80/100 %; at 100 % new jobs are refused (402) and running ones stop.")
    def patch(self, request):
        changes = self.patch_changes(SpendCapSerializer)
        if not changes:
            return Response(SubscriptionSerializer(services.account_for(organization=self.organization)).data)
        cap = changes["spend_cap_usd"]
        account = services.spend_cap_set(organization=self.organization, actor=self.actor,
                                         cap_cents=int(cap * 100) if cap is not None else None)
        return Response(SubscriptionSerializer(account).data)


class BillingCheckoutApi(OrganizationAPIView):
    serializer_class = RedirectSerializer

    @extend_schema(operation_id="billing_checkout", request=CheckoutSerializer, responses={201: RedirectSerializer},
                   description="A Stripe Checkout URL for a paid plan; the subscription changes when Stripe confirms it.")
    def post(self, request):
        payload = CheckoutSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        page = _billing_page(self.organization)
        url = services.checkout_start(organization=self.organization, actor=self.actor, plan_slug=payload.validated_data["plan"],
                                      success_url=payload.validated_data.get("success_url") or f"{page}?checkout=done",
                                      cancel_url=payload.validated_data.get("cancel_url") or page)
        return Response({"url": url}, status=status.HTTP_201_CREATED)


class BillingPortalApi(OrganizationAPIView):
    serializer_class = RedirectSerializer

    @extend_schema(operation_id="billing_portal", request=None, responses={201: RedirectSerializer},
                   description="A Stripe Customer Portal URL: payment method, plan changes, cancellation, invoices.")
    def post(self, request):
        url = services.portal_start(organization=self.organization, actor=self.actor, return_url=_billing_page(self.organization))
        return Response({"url": url}, status=status.HTTP_201_CREATED)


