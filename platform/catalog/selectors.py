from core.errors import field_error

from .models import BaseModel


def base_model_list():
    return BaseModel.objects.filter(is_active=True).order_by("name")


def base_model_get(*, slug: str, field: str = "base_model") -> BaseModel:
    model = base_model_list().filter(slug=slug).first()
    if model is None:
        choices = ", ".join(base_model_list().values_list("slug", flat=True)) or "none"
        raise field_error(field, f"Unknown base model '{slug}'. Available: {choices}.")
    return model
