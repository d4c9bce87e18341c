import logging

from .request_id import get_request_id


class RequestIDFilter(logging.Filter):
    """Adds `request_id` to every log record (`-` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        # django.request passes the request itself (logged after middleware ran).
        request = getattr(record, "request", None)
        record.request_id = getattr(request, "request_id", None) or get_request_id()
        return True
