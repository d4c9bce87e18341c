from drf_spectacular.utils import extend_schema
from rest_framework.response import Response

from core.api import OrganizationAPIView

from . import selectors
from .serializers import BaseModelQuerySerializer, BaseModelSerializer


class BaseModelListApi(OrganizationAPIView):
    serializer_class = BaseModelSerializer
    pagination_class = None

    @extend_schema(operation_id="base_models_list", responses=BaseModelSerializer(many=True),
                   parameters=[BaseModelQuerySerializer],
                   description="The base-model catalog: the models datasets are measured with and jobs start from. "
                               "Any member's key may read it.")
    def get(self, request):
        query = BaseModelQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        models = selectors.base_model_list(task_family=query.validated_data.get("task_family"))
        return Response(BaseModelSerializer(models, many=True).data)


class BaseModelDetailApi(OrganizationAPIView):
    serializer_class = BaseModelSerializer

    @extend_schema(operation_id="base_models_retrieve", responses=BaseModelSerializer,
                   description="One catalog model by its id (slug); a retired or unknown id is 404.")
    def get(self, request, slug: str):
        return Response(BaseModelSerializer(selectors.base_model_detail(slug=slug)).data)
