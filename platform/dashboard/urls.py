from django.contrib.auth import views as auth_views
from django.urls import include, path

import core.converters  # noqa: F401  (registers <id:…>: bounded ids)

from . import billing, datasets, jobs, overview, predictions, try_it, uploaded_models, views

# Auth pages keep Django's un-namespaced names (login, password_reset_done, ...),
# which contrib.auth reverses itself; the dashboard proper is namespaced.
auth_patterns = [
    path("signup", views.SignupView.as_view(), name="signup"),
    path("login", views.LoginView.as_view(), name="login"),
    path("logout", auth_views.LogoutView.as_view(), name="logout"),
    path("password-reset", auth_views.PasswordResetView.as_view(), name="password_reset"),
    path("password-reset/sent", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path("password-reset/<uidb64>/<token>", auth_views.PasswordResetConfirmView.as_view(), name="password_reset_confirm"),
    path("password-reset/complete", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
]

dashboard_patterns = [
    path("", views.HomeView.as_view(), name="home"),
    path("organizations/new", views.OrganizationCreateView.as_view(), name="organization-create"),
    path("invitations/<str:token>", views.InvitationAcceptView.as_view(), name="invitation-accept"),
    # Organization pages: every one of these takes the slug and is covered by
    # the tenant-isolation harness.
    path("o/<slug:slug>/", overview.OverviewView.as_view(), name="overview"),
    path("o/<slug:slug>/settings", views.SettingsView.as_view(), name="settings"),
    path("o/<slug:slug>/members", views.MembersView.as_view(), name="members"),
    path("o/<slug:slug>/members/<id:membership_id>/role", views.MemberRoleView.as_view(), name="member-role"),
    path("o/<slug:slug>/members/<id:membership_id>/remove", views.MemberRemoveView.as_view(), name="member-remove"),
    path("o/<slug:slug>/invitations/<id:invitation_id>/revoke", views.InvitationRevokeView.as_view(), name="invitation-revoke"),
    path("o/<slug:slug>/audit-log", views.AuditLogView.as_view(), name="audit-log"),
    path("o/<slug:slug>/api-keys", views.ApiKeysView.as_view(), name="api-keys"),
    path("o/<slug:slug>/api-keys/<id:api_key_id>/revoke", views.ApiKeyRevokeView.as_view(), name="api-key-revoke"),
    path("o/<slug:slug>/datasets", datasets.DatasetListView.as_view(), name="datasets"),
    path("o/<slug:slug>/datasets/<id:dataset_id>", datasets.DatasetDetailView.as_view(), name="dataset-detail"),
    path("o/<slug:slug>/datasets/<id:dataset_id>/delete", datasets.DatasetDeleteView.as_view(), name="dataset-delete"),
    path("o/<slug:slug>/datasets/<id:dataset_id>/versions/<id:number>/<slug:kind>.csv", datasets.DatasetVersionCsvView.as_view(),
         name="dataset-version-csv"),
    path("o/<slug:slug>/datasets/<id:dataset_id>/versions/<id:number>/delete", datasets.DatasetVersionDeleteView.as_view(),
         name="dataset-version-delete"),
    path("o/<slug:slug>/models", uploaded_models.ModelListView.as_view(), name="models"),
    path("o/<slug:slug>/models/<id:model_id>", uploaded_models.ModelDetailView.as_view(), name="model-detail"),
    path("o/<slug:slug>/models/<id:model_id>/compress", uploaded_models.ModelCompressView.as_view(), name="model-compress"),
    path("o/<slug:slug>/models/<id:model_id>/predict", predictions.ModelPredictView.as_view(), name="model-predict"),
    path("o/<slug:slug>/models/<id:model_id>/delete", uploaded_models.ModelDeleteView.as_view(), name="model-delete"),
    path("o/<slug:slug>/models/<id:model_id>/try", try_it.ModelTryView.as_view(), name="model-try"),
    path("o/<slug:slug>/jobs", jobs.JobListView.as_view(), name="jobs"),
    path("o/<slug:slug>/jobs/quote", billing.JobQuoteView.as_view(), name="job-quote"),
    path("o/<slug:slug>/billing", billing.BillingView.as_view(), name="billing"),
    path("o/<slug:slug>/billing/checkout", billing.BillingCheckoutView.as_view(), name="billing-checkout"),
    path("o/<slug:slug>/billing/portal", billing.BillingPortalView.as_view(), name="billing-portal"),
    path("o/<slug:slug>/billing/spend-cap", billing.BillingSpendCapView.as_view(), name="billing-spend-cap"),
    path("o/<slug:slug>/jobs/<id:job_id>", jobs.JobDetailView.as_view(), name="job-detail"),
    path("o/<slug:slug>/jobs/<id:job_id>/cancel", jobs.JobCancelView.as_view(), name="job-cancel"),
    path("o/<slug:slug>/jobs/<id:job_id>/pause", jobs.JobPauseView.as_view(), name="job-pause"),
    path("o/<slug:slug>/jobs/<id:job_id>/resume", jobs.JobResumeView.as_view(), name="job-resume"),
    path("o/<slug:slug>/jobs/<id:job_id>/compress", jobs.JobCompressView.as_view(), name="job-compress"),
    path("o/<slug:slug>/jobs/<id:job_id>/try", try_it.JobTryView.as_view(), name="job-try"),
    path("o/<slug:slug>/compare", jobs.CompareView.as_view(), name="compare"),
    path("o/<slug:slug>/jobs/<id:job_id>/compare", jobs.JobCompareVariantsView.as_view(), name="job-compare"),
    path("o/<slug:slug>/jobs/<id:job_id>/predict", predictions.JobPredictView.as_view(), name="job-predict"),
    path("o/<slug:slug>/jobs/<id:job_id>/leaderboard.csv", jobs.JobLeaderboardCsvView.as_view(), name="job-leaderboard-csv"),
    path("o/<slug:slug>/jobs/<id:job_id>/artifacts/<str:name>", jobs.JobArtifactDownloadView.as_view(), name="job-artifact"),
]

urlpatterns = auth_patterns + [path("", include((dashboard_patterns, "dashboard")))]
