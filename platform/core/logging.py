import logging
import time
from contextlib import contextmanager
from contextvars import ContextVar

from .client_ip import current_client_ip
from .request_id import get_request_id


# The job a worker thread is running (jobs.runner sets it): its records carry the organization and job id.
_job_context: ContextVar[tuple[int, int] | None] = ContextVar("lathe_job_context", default=None)


@contextmanager
def job_log_context(*, organization_id: int, job_id: int):
    token = _job_context.set((organization_id, job_id))
    try:
        yield
    finally:
        _job_context.reset(token)


class RequestIDFilter(logging.Filter):
    """Adds `request_id` and `client_ip` to every log record (`-` outside a request), and `organization` /
    `job_id` inside a job's run (job_log_context) unless the record names them itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        job = _job_context.get()
        if job is not None:
            if getattr(record, "organization", None) is None:
                record.organization = job[0]
            if getattr(record, "job_id", None) is None:
                record.job_id = job[1]
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
