from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.response import Response

from core.api import OrganizationAPIView
from core.parsers import JSONParser, StrictMultiPartParser
from corpora.limits import refuse_oversized_body

from . import selectors, services
from .serializers import ModelUploadSerializer, UploadedModelSerializer

class UploadedModelListApi(OrganizationAPIView):
    serializer_class = UploadedModelSerializer
    parser_classes = [StrictMultiPartParser, JSONParser]

    @extend_schema(operation_id="models_list", responses=UploadedModelSerializer(many=True))
    def get(self, request):
        page = self.paginate_queryset(selectors.uploaded_model_list(organization=self.organization))
        return self.get_paginated_response(UploadedModelSerializer(page, many=True).data)

    @extend_schema(operation_id="models_create", request={"multipart/form-data": ModelUploadSerializer},
                   responses={201: UploadedModelSerializer},
                   description="Upload a zipped model folder; it is validated (config, tensor names and shapes, tokenizer) "
                               "before it is kept. Compress it with POST /jobs and source_model_id.")
    def post(self, request):
        refuse_oversized_body(request, limit=settings.LATHE_MODEL_MAX_FILE_BYTES, limit_phrase="the limit is")
        payload = ModelUploadSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        model = services.model_upload(organization=self.organization, actor=self.actor, uploaded=payload.validated_data["file"],
                                      name=payload.validated_data["name"])
        return Response(UploadedModelSerializer(model).data, status=status.HTTP_201_CREATED)


class UploadedModelDetailApi(OrganizationAPIView):
    serializer_class = UploadedModelSerializer

    @extend_schema(operation_id="models_retrieve", responses=UploadedModelSerializer)
    def get(self, request, model_id: int):
        return Response(UploadedModelSerializer(selectors.uploaded_model_get(organization=self.organization, model_id=model_id)).data)

    @extend_schema(operation_id="models_destroy", responses={204: None},
                   description="Refused (409) while a job uses the model.")
    def delete(self, request, model_id: int):
        services.model_delete(organization=self.organization, actor=self.actor, model_id=model_id)
        return Response(status=status.HTTP_204_NO_CONTENT)
