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


# How the job page names and rounds a live metric (workers report them under these keys); others are shown
# with their key's words and four decimals.
METRIC_DISPLAY = {
    "train_loss": ("train loss", "{:.4f}"), "eval_loss": ("validation loss", "{:.4f}"),
    "accuracy": ("validation accuracy", "{:.4f}"), "macro_f1": ("validation macro-F1", "{:.4f}"),
    "perplexity": ("validation perplexity", "{:.2f}"), "learning_rate": ("learning rate", "{:.2e}"),
    "tokens_per_second": ("tokens/s", "{:,.0f}"), "trained_tokens_per_second": ("trained tokens/s", "{:,.0f}"),
    "examples_per_second": ("examples/s", "{:,.1f}"), "trained_tokens": ("trained tokens", "{:,.0f}"),
    "exact_match": ("exact match", "{:.3f}"), "token_f1": ("token-F1", "{:.3f}"),
}


@register.filter
def live_metrics(values) -> list[tuple[str, str]]:
    """A job's latest metrics as (label, value) pairs: {"tokens_per_second": 1834.2} → [("tokens/s", "1,834")]."""
    if not hasattr(values, "items"):
        return []
    shown = []
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        label, style = METRIC_DISPLAY.get(key, (key.replace("_", " "), "{:.4f}"))
        shown.append((label, style.format(value)))
    return shown
