from core.errors import NotFound

from .models import UploadedModel


def uploaded_model_list(*, organization):
    return UploadedModel.objects.filter(organization=organization).select_related("created_by")


def uploaded_model_get(*, organization, model_id) -> UploadedModel:
    model = uploaded_model_list(organization=organization).filter(pk=model_id).first()
    if model is None:
        raise NotFound("Model not found.")
    return model
