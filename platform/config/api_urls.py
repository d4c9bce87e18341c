"""/api/v1/ — canonical paths have no trailing slash (one is tolerated)."""
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

import core.converters  # noqa: F401  (registers <id:…>: bounded ids)

from accounts.api import ApiKeyDetailApi, ApiKeyListApi
from audit.api import AuditLogApi
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
from catalog.api import BaseModelDetailApi, BaseModelListApi
from core.csp import csp_update
from core.throttling import AnonymousRateThrottle
from corpora.api import (
    DatasetDetailApi,
    DatasetListApi,
    DatasetVersionCsvApi,
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
    JobLeaderboardApi,
    JobLeaderboardCsvApi,
    JobListApi,
    JobMetricListApi,
    JobPauseApi,
    JobQuoteApi,
    JobResumeApi,
    PredictionInputDetailApi,
    PredictionInputListApi,
)
from registry.api import UploadedModelDetailApi, UploadedModelListApi
from serving.api import JobPredictApi, ModelPredictApi
from tenancy.api import InvitationDetailApi, InvitationListApi, MemberDetailApi, MemberListApi, OrganizationDetailApi

app_name = "api"
PUBLIC = {"authentication_classes": [], "permission_classes": [], "throttle_classes": [AnonymousRateThrottle]}

urlpatterns = [
    path("organization", OrganizationDetailApi.as_view(), name="organization"),
    path("members", MemberListApi.as_view(), name="member-list"),
    path("members/<id:membership_id>", MemberDetailApi.as_view(), name="member-detail"),
    path("invitations", InvitationListApi.as_view(), name="invitation-list"),
    path("invitations/<id:invitation_id>", InvitationDetailApi.as_view(), name="invitation-detail"),
    path("api-keys", ApiKeyListApi.as_view(), name="api-key-list"),
    path("api-keys/<id:api_key_id>", ApiKeyDetailApi.as_view(), name="api-key-detail"),
    path("audit-log", AuditLogApi.as_view(), name="audit-log"),
    path("base-models", BaseModelListApi.as_view(), name="base-model-list"),
    path("base-models/<slug:slug>", BaseModelDetailApi.as_view(), name="base-model-detail"),
    path("datasets", DatasetListApi.as_view(), name="dataset-list"),
    path("datasets/<id:dataset_id>", DatasetDetailApi.as_view(), name="dataset-detail"),
    path("datasets/<id:dataset_id>/versions", DatasetVersionListApi.as_view(), name="dataset-version-list"),
    path("datasets/<id:dataset_id>/versions/<id:number>", DatasetVersionDetailApi.as_view(), name="dataset-version-detail"),
    path("datasets/<id:dataset_id>/versions/<id:number>/report", DatasetVersionReportApi.as_view(), name="dataset-version-report"),
    path("datasets/<id:dataset_id>/versions/<id:number>/preview", DatasetVersionPreviewApi.as_view(), name="dataset-version-preview"),
    path("datasets/<id:dataset_id>/versions/<id:number>/<slug:kind>.csv", DatasetVersionCsvApi.as_view(), name="dataset-version-csv"),
    path("jobs", JobListApi.as_view(), name="job-list"),
    path("jobs/quote", JobQuoteApi.as_view(), name="job-quote"),
    path("prediction-inputs", PredictionInputListApi.as_view(), name="prediction-input-list"),
    path("prediction-inputs/<id:input_id>", PredictionInputDetailApi.as_view(), name="prediction-input-detail"),
    path("jobs/<id:job_id>", JobDetailApi.as_view(), name="job-detail"),
    path("jobs/<id:job_id>/cancel", JobCancelApi.as_view(), name="job-cancel"),
    path("jobs/<id:job_id>/pause", JobPauseApi.as_view(), name="job-pause"),
    path("jobs/<id:job_id>/resume", JobResumeApi.as_view(), name="job-resume"),
    path("jobs/<id:job_id>/events", JobEventListApi.as_view(), name="job-events"),
    path("jobs/<id:job_id>/metrics", JobMetricListApi.as_view(), name="job-metrics"),
    path("jobs/<id:job_id>/artifacts", JobArtifactListApi.as_view(), name="job-artifacts"),
    path("jobs/<id:job_id>/predict", JobPredictApi.as_view(), name="job-predict"),
    path("jobs/<id:job_id>/leaderboard", JobLeaderboardApi.as_view(), name="job-leaderboard"),
    path("jobs/<id:job_id>/leaderboard.csv", JobLeaderboardCsvApi.as_view(), name="job-leaderboard-csv"),
    path("jobs/<id:job_id>/artifacts/<str:name>", JobArtifactDownloadApi.as_view(), name="job-artifact-download"),
    path("plans", PlanListApi.as_view(), name="plan-list"),
    path("billing/plan", BillingPlanApi.as_view(), name="billing-plan"),
    path("billing/subscription", BillingSubscriptionApi.as_view(), name="billing-subscription"),
    path("billing/usage", BillingUsageApi.as_view(), name="billing-usage"),
    path("billing/invoices", BillingInvoiceListApi.as_view(), name="billing-invoices"),
    path("billing/spend-cap", BillingSpendCapApi.as_view(), name="billing-spend-cap"),
    path("billing/checkout", BillingCheckoutApi.as_view(), name="billing-checkout"),
    path("billing/portal", BillingPortalApi.as_view(), name="billing-portal"),
    path("models", UploadedModelListApi.as_view(), name="model-list"),
    path("models/<id:model_id>", UploadedModelDetailApi.as_view(), name="model-detail"),
    path("models/<id:model_id>/predict", ModelPredictApi.as_view(), name="model-predict"),
    # Public documentation of the API: no credentials, so throttled per client IP
    # (generating the schema costs far more than an ordinary request).
    path("schema", SpectacularAPIView.as_view(**PUBLIC), name="schema"),
    # Swagger UI's start-up script is a file (?script), not inline: the CSP (core.csp) forbids inline scripts.
    path("docs", SpectacularSwaggerSplitView.as_view(url_name="api:schema", **PUBLIC), name="docs"),
    # Redoc's styled-components inject <style> elements at run time; its footer shows Redocly's logo.
    path("redoc", csp_update(style_src=["'unsafe-inline'"], worker_src=["blob:"], img_src=["https://cdn.redoc.ly"])(
        SpectacularRedocView.as_view(url_name="api:schema", **PUBLIC)), name="redoc"),
]
