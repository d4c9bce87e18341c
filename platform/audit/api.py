from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema

from core.api import OrganizationAPIView
from core.errors import field_error
from tenancy.models import Role

from .models import AuditAction
from .selectors import audit_event_list
from .serializers import AuditEventSerializer


class AuditLogApi(OrganizationAPIView):
    """The organization's audit log, newest first. Owners and admins only (an API
    key acts with its admin scope only while its creator is still an admin)."""

    serializer_class = AuditEventSerializer

    @extend_schema(
        operation_id="audit_log_list",
        responses=AuditEventSerializer(many=True),
        parameters=[OpenApiParameter("action", OpenApiTypes.STR, enum=AuditAction.values, description="Only this action.")],
    )
    def get(self, request):
        self.require_role(Role.ADMIN, to="read the audit log")
        action = request.query_params.get("action") or None
        if action is not None and action not in AuditAction.values:
            raise field_error("action", f"Unknown action '{action[:64]}'; choose one of {', '.join(AuditAction.values)}.")
        page = self.paginate_queryset(audit_event_list(organization=self.organization, action=action))
        return self.get_paginated_response(AuditEventSerializer(page, many=True).data)
