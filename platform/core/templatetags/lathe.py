from django import template

from corpora.parsing import human_bytes

register = template.Library()


@register.filter(name="bytes")
def bytes_filter(value) -> str:
    """Decimal units (1 MB = 1,000,000 B), the same as the API's messages."""
    try:
        return human_bytes(int(value))
    except (TypeError, ValueError):
        return ""


@register.filter
def get_item(mapping, key):
    return mapping.get(key) if hasattr(mapping, "get") else None


@register.filter
def usd_cents(cents) -> str:
    """4900 → "$49.00"."""
    if cents in (None, ""):
        return "—"
    return f"${int(cents) / 100:,.2f}"


@register.filter
def join_if_list(value):
    """A list as 'a, b' (audit details); anything else as itself."""
    if isinstance(value, (list, tuple)):
        return ", ".join(str(item) for item in value) or "none"
    return value
