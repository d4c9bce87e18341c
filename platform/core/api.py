"""The base of every organization-scoped API endpoint (after Sentry's
`OrganizationEndpoint`): the tenant is resolved once, right after
authentication, and handed to handlers as `self.organization` and `self.actor`.
Handlers pass it to selectors and services as their first keyword argument, so a
foreign id simply is not found (404).
"""
from __future__ import annotations

from rest_framework import generics, permissions
from rest_framework.exceptions import NotFound, PermissionDenied

from tenancy.entitlements import Entitlements, request_entitlements

from . import errors
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

    @property
    def entitlements(self) -> Entitlements:
        """The organization's entitlements, read once per request (the throttle's read, when it ran)."""
        return request_entitlements(self.request, organization=self.organization)

    def initial(self, request, *args, **kwargs):
        self.perform_authentication(request)
        if request.user and request.user.is_authenticated:
            self.resolve_organization(request)
        super().initial(request, *args, **kwargs)
        self.parse_body(request)

    @staticmethod
    def parse_body(request) -> None:
        """A write's body is parsed (and held to core.parsers' limits) before the
        handler runs, so an endpoint that reads none still refuses a malformed or
        oversized one. Uploads to endpoints that take multipart are parsed by
        those endpoints, after their size check."""
        if request.method in permissions.SAFE_METHODS:
            return
        if (request.content_type or "").startswith("multipart/") and any(
                (parser.media_type or "").startswith("multipart/") for parser in request.parsers):
            return
        request.data  # noqa: B018 - parsing is the point

    def patch_changes(self, serializer_class) -> dict:
        """A PATCH body, validated partially: only the fields sent, none required
        (as the schema's Patched* bodies say). `{}` gives {}: the handler answers
        200 with the resource unchanged. A field the endpoint does not take is
        refused (400), so a misspelt one is not a silent no-op."""
        known = serializer_class().fields
        if isinstance(self.request.data, dict):
            unknown = sorted(set(self.request.data) - set(known))
            if unknown:
                message = f"This endpoint does not take {', '.join(unknown)}; it takes {', '.join(known)}."
                raise errors.ApplicationError(message, code="unknown_field", fields={name: [message] for name in unknown})
        payload = serializer_class(data=self.request.data, partial=True)
        payload.is_valid(raise_exception=True)
        return dict(payload.validated_data)

    def require_role(self, minimum: str, *, to: str) -> None:
        """403 unless the actor (a member, or a key capped by its creator's current role) has `minimum`."""
        if not self.actor.has_role(minimum):
            raise errors.PermissionDenied(f"Only an organization admin or owner can {to}.")

    def resolve_organization(self, request) -> None:
        from tenancy.actors import Actor
        from tenancy.models import Membership

        api_key = getattr(request.user, "api_key", None)
        if api_key is not None:
            self.organization = api_key.organization
            # ApiKeyAuthentication checked that the creator is still a member.
            self.actor = Actor.for_api_key(api_key, creator_role=api_key.creator_role)
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
