"""{% load try_it %}: the job page's Try-it card lists the job's model archives (its variants)."""
from django import template

register = template.Library()


@register.filter
def model_archive_names(artifacts) -> list[str]:
    return sorted(a.name for a in artifacts or () if getattr(a, "kind", "") == "model")
