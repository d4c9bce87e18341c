"""/api/v1/ — canonical paths have no trailing slash (one is tolerated)."""
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from accounts.api import ApiKeyDetailApi, ApiKeyListApi
from billing.api import (
    BillingCheckoutApi,
    BillingInvoiceListApi,
    BillingPlanApi,
    BillingPortalApi,
    BillingSpendCapApi,
    BillingSubscriptionApi,
    BillingUsageApi,
    PlanListApi,
)
from corpora.api import (
    DatasetDetailApi,
    DatasetListApi,
    DatasetVersionDetailApi,
    DatasetVersionListApi,
    DatasetVersionPreviewApi,
    DatasetVersionReportApi,
)
from jobs.api import (
    JobArtifactDownloadApi,
    JobArtifactListApi,
    JobCancelApi,
    JobDetailApi,
    JobEventListApi,
    JobListApi,
    JobMetricListApi,
    JobQuoteApi,
)
from registry.api import UploadedModelDetailApi, UploadedModelListApi
from tenancy.api import InvitationDetailApi, InvitationListApi, MemberDetailApi, MemberListApi, OrganizationDetailApi

app_name = "api"

urlpatterns = [
    path("organization", OrganizationDetailApi.as_view(), name="organization"),
    path("members", MemberListApi.as_view(), name="member-list"),
    path("members/<int:membership_id>", MemberDetailApi.as_view(), name="member-detail"),
    path("invitations", InvitationListApi.as_view(), name="invitation-list"),
    path("invitations/<int:invitation_id>", InvitationDetailApi.as_view(), name="invitation-detail"),
    path("api-keys", ApiKeyListApi.as_view(), name="api-key-list"),
    path("api-keys/<int:api_key_id>", ApiKeyDetailApi.as_view(), name="api-key-detail"),
    path("datasets", DatasetListApi.as_view(), name="dataset-list"),
    path("datasets/<int:dataset_id>", DatasetDetailApi.as_view(), name="dataset-detail"),
    path("datasets/<int:dataset_id>/versions", DatasetVersionListApi.as_view(), name="dataset-version-list"),
    path("datasets/<int:dataset_id>/versions/<int:number>", DatasetVersionDetailApi.as_view(), name="dataset-version-detail"),
    path("datasets/<int:dataset_id>/versions/<int:number>/report", DatasetVersionReportApi.as_view(), name="dataset-version-report"),
    path("datasets/<int:dataset_id>/versions/<int:number>/preview", DatasetVersionPreviewApi.as_view(), name="dataset-version-preview"),
    path("jobs", JobListApi.as_view(), name="job-list"),
    path("jobs/quote", JobQuoteApi.as_view(), name="job-quote"),
    path("jobs/<int:job_id>", JobDetailApi.as_view(), name="job-detail"),
    path("jobs/<int:job_id>/cancel", JobCancelApi.as_view(), name="job-cancel"),
    path("jobs/<int:job_id>/events", JobEventListApi.as_view(), name="job-events"),
    path("jobs/<int:job_id>/metrics", JobMetricListApi.as_view(), name="job-metrics"),
    path("jobs/<int:job_id>/artifacts", JobArtifactListApi.as_view(), name="job-artifacts"),
    path("jobs/<int:job_id>/artifacts/<str:name>", JobArtifactDownloadApi.as_view(), name="job-artifact-download"),
    path("plans", PlanListApi.as_view(), name="plan-list"),
    path("billing/plan", BillingPlanApi.as_view(), name="billing-plan"),
    path("billing/subscription", BillingSubscriptionApi.as_view(), name="billing-subscription"),
    path("billing/usage", BillingUsageApi.as_view(), name="billing-usage"),
    path("billing/invoices", BillingInvoiceListApi.as_view(), name="billing-invoices"),
    path("billing/spend-cap", BillingSpendCapApi.as_view(), name="billing-spend-cap"),
    path("billing/checkout", BillingCheckoutApi.as_view(), name="billing-checkout"),
    path("billing/portal", BillingPortalApi.as_view(), name="billing-portal"),
    path("models", UploadedModelListApi.as_view(), name="model-list"),
    path("models/<int:model_id>", UploadedModelDetailApi.as_view(), name="model-detail"),
    # Public documentation of the API.
    path("schema", SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[]), name="schema"),
    path("docs", SpectacularSwaggerView.as_view(url_name="api:schema", authentication_classes=[], permission_classes=[]), name="docs"),
    path("redoc", SpectacularRedocView.as_view(url_name="api:schema", authentication_classes=[], permission_classes=[]), name="redoc"),
]
