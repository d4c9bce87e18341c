from .request_id import choose_request_id, reset_request_id, set_request_id

REQUEST_ID_HEADER = "X-Request-ID"


class RequestIDMiddleware:
    """Every response carries X-Request-ID (the caller's, if sane, else a new one),
    and every log line written while handling the request shows it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request_id = choose_request_id(request.headers.get(REQUEST_ID_HEADER))
        request.request_id = request_id
        token = set_request_id(request_id)
        try:
            response = self.get_response(request)
        finally:
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
