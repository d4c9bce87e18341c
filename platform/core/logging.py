import logging

from .client_ip import current_client_ip
from .request_id import get_request_id


class RequestIDFilter(logging.Filter):
    """Adds `request_id` and `client_ip` to every log record (`-` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        # django.request passes the request itself (logged after middleware ran).
        request = getattr(record, "request", None)
        record.request_id = getattr(request, "request_id", None) or get_request_id()
        record.client_ip = getattr(request, "client_ip", None) or current_client_ip() or "-"
        return True
