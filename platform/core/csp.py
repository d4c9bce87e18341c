"""Content-Security-Policy on every HTML page (dashboard, sign-in, errors,
admin, the API reference).

Scripts and styles come only from this origin (static/, the vendored htmx and
Chart.js, drf-spectacular's sidecar): no inline <script>, no style="..."
attribute, no on*= handler, no eval. Chart data reaches the page through
Django's json_script (a <script type="application/json"> that never runs) and
static/js/charts.js draws it. A view that needs more (Redoc injects <style>
elements) says so with @csp_update; settings.LATHE_CSP replaces the whole
policy (e.g. to name another payment host for form-action).
"""
from __future__ import annotations

from functools import wraps

from django.conf import settings

HEADER = "Content-Security-Policy"

DEFAULT_POLICY: dict[str, list[str]] = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "font-src": ["'self'"],
    "connect-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "frame-ancestors": ["'none'"],
    # Checkout and the billing portal are a POST here answered by a redirect to
    # Stripe; browsers hold form-action to the redirect's target too.
    "form-action": ["'self'", "https://checkout.stripe.com", "https://billing.stripe.com"],
}


def policy_header(extra: dict[str, list[str]] | None = None) -> str:
    policy = {name: list(values) for name, values in getattr(settings, "LATHE_CSP", DEFAULT_POLICY).items()}
    for name, values in (extra or {}).items():
        policy[name] = [*policy.get(name, policy.get("default-src", [])), *values]
    return "; ".join(" ".join([name, *values]) for name, values in policy.items())


class ContentSecurityPolicyMiddleware:
    """Adds the policy to HTML responses that do not carry one already."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if HEADER not in response and response.get("Content-Type", "").startswith("text/html"):
            response[HEADER] = policy_header(getattr(response, "csp_update", None))
        return response


def csp_update(**directives: list[str]):
    """View decorator: more sources for some directives on this view's pages,
    e.g. @csp_update(style_src=["'unsafe-inline'"])."""
    extra = {name.replace("_", "-"): list(values) for name, values in directives.items()}

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            response = view(request, *args, **kwargs)
            response.csp_update = extra
            return response
        return wrapped
    return decorator
