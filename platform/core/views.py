"""Error handlers: JSON (the uniform error body) under /api/ and for the Stripe
webhook, HTML elsewhere."""
from django.core.exceptions import SuspiciousOperation
from django.shortcuts import render
from django.views import defaults

from .exceptions import json_error_response, suspicious_request_error

JSON_PREFIXES = ("/api/", "/stripe/")


def _is_api(request) -> bool:
    return request.path.startswith(JSON_PREFIXES)


def bad_request(request, exception=None):
    # Django's refusals of a body (RequestDataTooBig, TooManyFieldsSent) in a plain view.
    error = suspicious_request_error(exception) if isinstance(exception, SuspiciousOperation) else None
    if _is_api(request):
        if error is not None:
            return json_error_response(status=error.status_code, code=error.code, message=error.message)
        return json_error_response(status=400, code="bad_request", message="The request could not be understood.")
    response = defaults.bad_request(request, exception)
    if error is not None:
        response.status_code = error.status_code
    return response


def permission_denied(request, exception=None):
    if _is_api(request):
        return json_error_response(status=403, code="permission_denied", message=str(exception) or "Not allowed.")
    return render(request, "errors/403.html", {"message": str(exception or "")}, status=403)


def page_not_found(request, exception=None):
    if _is_api(request):
        return json_error_response(status=404, code="not_found", message=f"No API endpoint at {request.path}.")
    return render(request, "errors/404.html", status=404)


def server_error(request):
    if _is_api(request):
        return json_error_response(status=500, code="server_error", message="Something went wrong on our side; it has been logged.")
    return defaults.server_error(request)
