from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response

from core.api import OrganizationAPIView

from . import selectors, services
from .serializers import (
    InvitationCreateSerializer,
    InvitationSerializer,
    MembershipSerializer,
    MembershipUpdateSerializer,
    OrganizationSerializer,
    OrganizationUpdateSerializer,
)


class OrganizationDetailApi(OrganizationAPIView):
    """The organization the credentials belong to."""

    serializer_class = OrganizationSerializer
    required_write_scopes = ("admin",)

    @extend_schema(operation_id="organization_retrieve", responses=OrganizationSerializer)
    def get(self, request):
        return Response(OrganizationSerializer(self.organization).data)

    @extend_schema(operation_id="organization_update", request=OrganizationUpdateSerializer, responses=OrganizationSerializer)
    def patch(self, request):
        changes = self.patch_changes(OrganizationUpdateSerializer)
        if not changes:
            return Response(OrganizationSerializer(self.organization).data)
        organization = services.organization_update(organization=self.organization, actor=self.actor, **changes)
        return Response(OrganizationSerializer(organization).data)


class MemberListApi(OrganizationAPIView):
    serializer_class = MembershipSerializer

    @extend_schema(operation_id="members_list", responses=MembershipSerializer(many=True))
    def get(self, request):
        page = self.paginate_queryset(selectors.membership_list(organization=self.organization))
        return self.get_paginated_response(MembershipSerializer(page, many=True).data)


class MemberDetailApi(OrganizationAPIView):
    serializer_class = MembershipSerializer
    required_write_scopes = ("admin",)

    @extend_schema(operation_id="members_retrieve", responses=MembershipSerializer)
    def get(self, request, membership_id: int):
        membership = selectors.membership_get(organization=self.organization, membership_id=membership_id)
        return Response(MembershipSerializer(membership).data)

    @extend_schema(operation_id="members_update", request=MembershipUpdateSerializer, responses=MembershipSerializer)
    def patch(self, request, membership_id: int):
        changes = self.patch_changes(MembershipUpdateSerializer)
        if not changes:
            membership = selectors.membership_get(organization=self.organization, membership_id=membership_id)
            return Response(MembershipSerializer(membership).data)
        membership = services.membership_change_role(
            organization=self.organization, actor=self.actor, membership_id=membership_id, role=changes["role"]
        )
        return Response(MembershipSerializer(membership).data)

    @extend_schema(operation_id="members_destroy", responses={204: None})
    def delete(self, request, membership_id: int):
        services.membership_remove(organization=self.organization, actor=self.actor, membership_id=membership_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvitationListApi(OrganizationAPIView):
    serializer_class = InvitationSerializer
    required_write_scopes = ("admin",)

    @extend_schema(operation_id="invitations_list", responses=InvitationSerializer(many=True))
    def get(self, request):
        page = self.paginate_queryset(selectors.invitation_list(organization=self.organization))
        return self.get_paginated_response(InvitationSerializer(page, many=True).data)

    @extend_schema(operation_id="invitations_create", request=InvitationCreateSerializer, responses={201: InvitationSerializer})
    def post(self, request):
        payload = InvitationCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        invitation, _token = services.invitation_create(organization=self.organization, actor=self.actor, **payload.validated_data)
        return Response(InvitationSerializer(invitation).data, status=status.HTTP_201_CREATED)


class InvitationDetailApi(OrganizationAPIView):
    serializer_class = InvitationSerializer
    required_write_scopes = ("admin",)

    @extend_schema(operation_id="invitations_retrieve", responses=InvitationSerializer)
    def get(self, request, invitation_id: int):
        invitation = selectors.invitation_get(organization=self.organization, invitation_id=invitation_id)
        return Response(InvitationSerializer(invitation).data)

    @extend_schema(operation_id="invitations_revoke", responses={204: None})
    def delete(self, request, invitation_id: int):
        services.invitation_revoke(organization=self.organization, actor=self.actor, invitation_id=invitation_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
