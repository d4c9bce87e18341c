from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response

from catalog.selectors import base_model_get
from core.api import OrganizationAPIView
from core.csv_export import csv_response
from core.parsers import JSONParser, StrictMultiPartParser

from . import selectors, services
from .limits import limits_for, refuse_oversized_body
from .serializers import (DatasetCheckSerializer, DatasetSerializer, DatasetUploadSerializer, DatasetVersionSerializer,
                          PreviewQuerySerializer)

DRY_RUN = " With dry_run=true nothing is kept: 200 with the report and the first rows as they would be stored."

class UploadMixin:
    parser_classes = [StrictMultiPartParser, JSONParser]

    def upload(self, request, dataset=None):
        refuse_oversized_body(request, limit=limits_for(organization=self.organization).max_file_bytes)
        payload = DatasetUploadSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        kwargs = payload.service_kwargs()
        slug = kwargs.pop("base_model", None)
        kwargs["base_model"] = base_model_get(slug=slug) if slug else None
        return services.dataset_upload(organization=self.organization, actor=self.actor, dataset=dataset, **kwargs)

    def checked(self, result, kept):
        """A dry run's 200, or `kept(version)`'s 201."""
        if isinstance(result, services.UploadCheck):
            return Response(DatasetCheckSerializer(result).data, status=status.HTTP_200_OK)
        return Response(kept(result), status=status.HTTP_201_CREATED)


class DatasetListApi(UploadMixin, OrganizationAPIView):
    serializer_class = DatasetSerializer

    @extend_schema(operation_id="datasets_list", responses=DatasetSerializer(many=True))
    def get(self, request):
        page = self.paginate_queryset(selectors.dataset_list(organization=self.organization))
        return self.get_paginated_response(DatasetSerializer(page, many=True).data)

    @extend_schema(operation_id="datasets_create", request={"multipart/form-data": DatasetUploadSerializer},
                   responses={201: DatasetSerializer, 200: DatasetCheckSerializer},
                   description="Upload a file; it is validated and reported on before it is kept (version 1)." + DRY_RUN)
    def post(self, request):
        return self.checked(self.upload(request), lambda version: DatasetSerializer(version.dataset).data)


class DatasetDetailApi(OrganizationAPIView):
    serializer_class = DatasetSerializer

    @extend_schema(operation_id="datasets_retrieve", responses=DatasetSerializer)
    def get(self, request, dataset_id: int):
        return Response(DatasetSerializer(selectors.dataset_get(organization=self.organization, dataset_id=dataset_id)).data)

    @extend_schema(operation_id="datasets_destroy", responses={204: None},
                   description="Delete the dataset and all its versions; refused (409) while a job uses one.")
    def delete(self, request, dataset_id: int):
        services.dataset_delete(organization=self.organization, actor=self.actor, dataset_id=dataset_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class DatasetVersionListApi(UploadMixin, OrganizationAPIView):
    serializer_class = DatasetVersionSerializer
    pagination_class = None

    @extend_schema(operation_id="dataset_versions_list", responses=DatasetVersionSerializer(many=True))
    def get(self, request, dataset_id: int):
        dataset = selectors.dataset_get(organization=self.organization, dataset_id=dataset_id)
        versions = selectors.dataset_version_list(organization=self.organization, dataset=dataset)
        return Response(DatasetVersionSerializer(versions, many=True).data)

    @extend_schema(operation_id="dataset_versions_create", request={"multipart/form-data": DatasetUploadSerializer},
                   responses={201: DatasetVersionSerializer, 200: DatasetCheckSerializer},
                   description="Upload a new immutable version." + DRY_RUN)
    def post(self, request, dataset_id: int):
        dataset = selectors.dataset_get(organization=self.organization, dataset_id=dataset_id)
        return self.checked(self.upload(request, dataset=dataset), lambda version: DatasetVersionSerializer(version).data)


class DatasetVersionMixin:
    def version(self, dataset_id, number):
        dataset = selectors.dataset_get(organization=self.organization, dataset_id=dataset_id)
        return selectors.dataset_version_get(organization=self.organization, dataset=dataset, number=number)


class DatasetVersionDetailApi(DatasetVersionMixin, OrganizationAPIView):
    serializer_class = DatasetVersionSerializer

    @extend_schema(operation_id="dataset_versions_retrieve", responses=DatasetVersionSerializer)
    def get(self, request, dataset_id: int, number: int):
        return Response(DatasetVersionSerializer(self.version(dataset_id, number)).data)

    @extend_schema(operation_id="dataset_versions_destroy", responses={204: None})
    def delete(self, request, dataset_id: int, number: int):
        services.dataset_version_delete(organization=self.organization, actor=self.actor, dataset_id=dataset_id, number=number)
        return Response(status=status.HTTP_204_NO_CONTENT)


class DatasetVersionReportApi(DatasetVersionMixin, OrganizationAPIView):
    serializer_class = DatasetVersionSerializer

    @extend_schema(operation_id="dataset_versions_report",
                   responses=inline_serializer("PreflightReport", {"report": serializers.DictField()}),
                   description="The preflight report: rows, rejected rows with line numbers, labels, duplicates, "
                               "leakage, token lengths and histogram, split. Chat datasets add `conversations` and "
                               "`tokens` (per-conversation tokens with the base model's chat template, trained "
                               "tokens, truncation; docs/datasets.md).")
    def get(self, request, dataset_id: int, number: int):
        return Response({"report": self.version(dataset_id, number).report})


class DatasetVersionPreviewApi(DatasetVersionMixin, OrganizationAPIView):
    serializer_class = DatasetVersionSerializer

    @extend_schema(operation_id="dataset_versions_preview", parameters=[PreviewQuerySerializer],
                   responses=inline_serializer("DatasetPreview", {"split": serializers.CharField(),
                                                                  "rows": serializers.ListField(child=serializers.DictField())}))
    def get(self, request, dataset_id: int, number: int):
        query = PreviewQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        rows = selectors.dataset_version_preview(version=self.version(dataset_id, number), **query.validated_data)
        return Response({"split": query.validated_data["split"], "rows": rows})


class DatasetVersionCsvApi(DatasetVersionMixin, OrganizationAPIView):
    serializer_class = DatasetVersionSerializer

    @extend_schema(operation_id="dataset_versions_csv",
                   parameters=[OpenApiParameter("kind", OpenApiTypes.STR, OpenApiParameter.PATH, enum=list(selectors.CSV_EXPORTS)),
                               PreviewQuerySerializer],
                   responses={(200, "text/csv"): OpenApiTypes.STR},
                   description="A CSV download: `preview` (the first rows of `split`, up to `limit`), `labels` (rows per "
                               "label) or `rejected` (line and reason). Cells that begin with =, +, -, @, tab or CR are "
                               "prefixed with an apostrophe so spreadsheets show them as text.")
    def get(self, request, dataset_id: int, number: int, kind: str):
        query = PreviewQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        name, header, rows = selectors.dataset_version_csv(version=self.version(dataset_id, number), kind=kind,
                                                           **query.validated_data)
        return csv_response(name, header, rows)
