"""The base of every organization-scoped API endpoint (after Sentry's
`OrganizationEndpoint`): the tenant is resolved once, right after
authentication, and handed to handlers as `self.organization` and `self.actor`.
Handlers pass it to selectors and services as their first keyword argument, so a
foreign id simply is not found (404).
"""
from __future__ import annotations

from rest_framework import generics, permissions
from rest_framework.exceptions import NotFound, PermissionDenied

from .throttling import OrganizationRateThrottle

SESSION_ORGANIZATION_KEY = "current_organization_id"


class ApiKeyScopePermission(permissions.BasePermission):
    """An API key needs `read` for safe methods, `write` for others, plus any
    extra scope the view names in `required_write_scopes`. People (session auth)
    are checked by role inside the services instead."""

    def has_permission(self, request, view) -> bool:
        api_key = getattr(request.user, "api_key", None)
        if api_key is None:
            return True
        needed = ["read"] if request.method in permissions.SAFE_METHODS else ["write", *getattr(view, "required_write_scopes", ())]
        missing = [scope for scope in needed if not api_key.has_scope(scope)]
        if missing:
            raise PermissionDenied(
                f"This API key lacks the {', '.join(repr(s) for s in missing)} scope this request needs "
                f"(it has: {', '.join(api_key.scopes) or 'none'})."
            )
        return True


class OrganizationAPIView(generics.GenericAPIView):
    permission_classes = [permissions.IsAuthenticated, ApiKeyScopePermission]
    throttle_classes = [OrganizationRateThrottle]
    required_write_scopes: tuple[str, ...] = ()

    organization = None
    actor = None
    membership = None

    def initial(self, request, *args, **kwargs):
        self.perform_authentication(request)
        if request.user and request.user.is_authenticated:
            self.resolve_organization(request)
        super().initial(request, *args, **kwargs)

    def resolve_organization(self, request) -> None:
        from tenancy.actors import Actor
        from tenancy.models import Membership

        api_key = getattr(request.user, "api_key", None)
        if api_key is not None:
            self.organization = api_key.organization
            self.actor = Actor.for_api_key(api_key)
        else:
            memberships = Membership.objects.select_related("organization").filter(
                user=request.user, organization__deactivated_at__isnull=True
            )
            wanted = request.session.get(SESSION_ORGANIZATION_KEY) if hasattr(request, "session") else None
            membership = None
            if wanted is not None:
                membership = memberships.filter(organization_id=wanted).first()
            if membership is None:
                membership = memberships.order_by("created_at", "id").first()
            if membership is None:
                raise NotFound("You do not belong to any organization yet.")
            self.membership = membership
            self.organization = membership.organization
            self.actor = Actor.for_membership(membership)
        request.organization = self.organization
