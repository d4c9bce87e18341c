"""Operators: the quote error per device class and method (admin → Jobs →
Quote accuracy): the last N succeeded jobs' stored quotes against their billed
seconds (selectors.quote_accuracy). Read-only; staff only (admin_view)."""
from __future__ import annotations

from django.template.response import TemplateResponse

from .quote_errors import WITHIN_PERCENT
from .selectors import QUOTE_ACCURACY_JOBS, quote_accuracy

MAX_JOBS = 5000


def quote_accuracy_view(request, *, admin_site):
    try:
        last = min(MAX_JOBS, max(1, int(request.GET.get("last", QUOTE_ACCURACY_JOBS))))
    except ValueError:
        last = QUOTE_ACCURACY_JOBS
    context = {**admin_site.each_context(request), "title": "Quote accuracy", "rows": quote_accuracy(last=last),
               "last": last, "within": WITHIN_PERCENT}
    return TemplateResponse(request, "admin/jobs/quote_accuracy.html", context)
