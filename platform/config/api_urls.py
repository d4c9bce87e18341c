"""/api/v1/ — canonical paths have no trailing slash (one is tolerated)."""
from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from accounts.api import ApiKeyDetailApi, ApiKeyListApi
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
    # Public documentation of the API.
    path("schema", SpectacularAPIView.as_view(authentication_classes=[], permission_classes=[]), name="schema"),
    path("docs", SpectacularSwaggerView.as_view(url_name="api:schema", authentication_classes=[], permission_classes=[]), name="docs"),
    path("redoc", SpectacularRedocView.as_view(url_name="api:schema", authentication_classes=[], permission_classes=[]), name="redoc"),
]
