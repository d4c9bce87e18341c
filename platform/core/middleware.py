from .client_ip import client_ip, reset_current_client_ip, set_current_client_ip
from .request_id import choose_request_id, reset_request_id, set_request_id

REQUEST_ID_HEADER = "X-Request-ID"


class RequestIDMiddleware:
    """Every response carries X-Request-ID (the caller's, if sane, else a new one),
    and every log line written while handling the request shows it and the
    client's IP (core.client_ip's rule)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = choose_request_id(request.headers.get(REQUEST_ID_HEADER))
        request.request_id = request_id
        request.client_ip = client_ip(request)
        token = set_request_id(request_id)
        ip_token = set_current_client_ip(request.client_ip)
        try:
            response = self.get_response(request)
        finally:
            reset_current_client_ip(ip_token)
            reset_request_id(token)
        response[REQUEST_ID_HEADER] = request_id
        return response


class ApiTrailingSlashMiddleware:
    """API routes are canonical without a trailing slash (`/api/v1/members`), but a
    client that adds one gets the same resource rather than a 404 or a redirect
    that drops its POST body."""

    prefix = "/api/"

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        path = request.path_info
        if path.startswith(self.prefix) and len(path) > len(self.prefix) and path.endswith("/"):
            request.path_info = path.rstrip("/")
        return self.get_response(request)
