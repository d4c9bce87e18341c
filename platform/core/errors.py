"""One error type for the service layer (HackSoft styleguide).

Services raise ApplicationError (or a subclass); the API's exception handler and
the dashboard's forms turn it into the uniform error body / inline form errors.
"""
from __future__ import annotations


class ApplicationError(Exception):
    status_code = 400
    default_code = "invalid"

    def __init__(self, message: str, *, code: str | None = None, fields: dict | None = None, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        # {"field_name": ["what is wrong", ...]}
        self.fields = fields or {}
        if status is not None:
            self.status_code = status


class NotFound(ApplicationError):
    status_code = 404
    default_code = "not_found"


class PermissionDenied(ApplicationError):
    status_code = 403
    default_code = "permission_denied"


class Conflict(ApplicationError):
    status_code = 409
    default_code = "conflict"


def field_error(field: str, message: str, *, code: str = "invalid") -> ApplicationError:
    return ApplicationError(message, code=code, fields={field: [message]})
