import logging
import time

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


class JsonFormatter(logging.Formatter):
    converter = time.gmtime
    """One JSON object per line (LATHE_LOG_FORMAT=json): time, level, logger, message, request_id,
    client_ip, and `organization` / `job_id` when the record carries them (`extra={"job_id": …}`)."""

    CONTEXT = ("request_id", "client_ip", "organization", "job_id")

    def format(self, record: logging.LogRecord) -> str:
        import json

        entry = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",  # UTC
                 "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        for key in self.CONTEXT:
            value = getattr(record, key, None)
            if value not in (None, "", "-"):
                entry[key] = value if isinstance(value, (int, float, bool)) else str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)
