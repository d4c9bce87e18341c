from core.errors import NotFound, field_error

from .models import BaseModel


def base_model_list(*, task_family: str | None = None):
    """Active catalog models, by name; of one task family when given (classification, chat)."""
    models = BaseModel.objects.filter(is_active=True)
    if task_family:
        models = models.filter(task_family=task_family)
    return models.order_by("name")


def base_model_get(*, slug: str, field: str = "base_model") -> BaseModel:
    """The active model `slug`, or a 400 on `field` listing the choices (a request body names it)."""
    model = base_model_list().filter(slug=slug).first()
    if model is None:
        choices = ", ".join(base_model_list().values_list("slug", flat=True)) or "none"
        raise field_error(field, f"Unknown base model '{slug}'. Available: {choices}.")
    return model


def base_model_detail(*, slug: str) -> BaseModel:
    """The active model `slug`, or a 404 (a URL names it): retired and unknown models look the same."""
    model = base_model_list().filter(slug=slug).first()
    if model is None:
        raise NotFound("Base model not found.")
    return model


def default_base_model(*, task_family: str) -> BaseModel | None:
    """The model that measures datasets of `task_family` at upload: the one marked default, else the first
    active one by name, else None."""
    models = base_model_list(task_family=task_family)
    return models.filter(is_default=True).first() or models.first()
