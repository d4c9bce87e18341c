from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response

from core.api import OrganizationAPIView
from tenancy.models import Role

from . import selectors, services
from .serializers import ApiKeyCreatedSerializer, ApiKeyCreateSerializer, ApiKeySerializer


class ApiKeyListApi(OrganizationAPIView):
    serializer_class = ApiKeySerializer
    required_write_scopes = ("admin",)

    @extend_schema(operation_id="api_keys_list", responses=ApiKeySerializer(many=True))
    def get(self, request):
        self.require_role(Role.ADMIN, to="list API keys")
        page = self.paginate_queryset(selectors.api_key_list(organization=self.organization))
        return self.get_paginated_response(ApiKeySerializer(page, many=True).data)

    @extend_schema(operation_id="api_keys_create", request=ApiKeyCreateSerializer, responses={201: ApiKeyCreatedSerializer})
    def post(self, request):
        payload = ApiKeyCreateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        api_key, full_key = services.api_key_create(organization=self.organization, actor=self.actor, **payload.validated_data)
        api_key.key = full_key
        return Response(ApiKeyCreatedSerializer(api_key).data, status=status.HTTP_201_CREATED)


class ApiKeyDetailApi(OrganizationAPIView):
    serializer_class = ApiKeySerializer
    required_write_scopes = ("admin",)

    @extend_schema(operation_id="api_keys_retrieve", responses=ApiKeySerializer)
    def get(self, request, api_key_id: int):
        self.require_role(Role.ADMIN, to="see API keys")
        return Response(ApiKeySerializer(selectors.api_key_get(organization=self.organization, api_key_id=api_key_id)).data)

    @extend_schema(operation_id="api_keys_revoke", responses={204: None}, description="Revoke the key; it stays listed as revoked.")
    def delete(self, request, api_key_id: int):
        services.api_key_revoke(organization=self.organization, actor=self.actor, api_key_id=api_key_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
