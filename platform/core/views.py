"""Error handlers: JSON (the uniform error body) under /api/, HTML elsewhere."""
from django.shortcuts import render
from django.views import defaults

from .exceptions import json_error_response


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def bad_request(request, exception=None):
    if _is_api(request):
        return json_error_response(status=400, code="bad_request", message="The request could not be understood.")
    return defaults.bad_request(request, exception)


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
