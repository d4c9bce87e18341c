"""Cursor pagination for every list endpoint.

Its two query parameters are checked, never silently ignored or clamped: a
`page_size` that is not a whole number from 1 to MAX_PAGE_SIZE is a 400 naming
the parameter (the schema says the same: minimum, maximum, default); a `cursor`
this server did not hand out names no page: 404, code `invalid_cursor`, naming
the parameter. Either given twice is a 400.
"""
from __future__ import annotations

from base64 import b64decode
from urllib import parse

from django.core.exceptions import FieldDoesNotExist, ValidationError
from rest_framework.pagination import Cursor, CursorPagination

from .errors import ApplicationError, field_error

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 200


class CreatedCursorPagination(CursorPagination):
    """Stable under inserts: newest first, opaque `cursor`, `page_size` 1–200 (default 50)."""

    ordering = ("-created_at", "-id")
    page_size = DEFAULT_PAGE_SIZE
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE
    cursor_query_description = "The `next` or `previous` link of a page carries it; send it back as it is."

    def _single(self, request, name: str) -> str | None:
        values = request.query_params.getlist(name)
        if not values:
            return None
        if len(values) > 1:
            raise field_error(name, f"Give {name} once (it was given {len(values)} times).")
        return values[0]

    def paginate_queryset(self, queryset, request, view=None):
        self._model = getattr(queryset, "model", None)
        return super().paginate_queryset(queryset, request, view)

    def get_page_size(self, request):
        raw = self._single(request, self.page_size_query_param)
        if raw is None:
            return self.page_size
        value = raw.strip()
        if not (value.isascii() and value.isdigit() and len(value) <= 6 and 1 <= int(value) <= self.max_page_size):
            shown = raw if len(raw) <= 20 else f"{raw[:20]}…"
            raise field_error(
                self.page_size_query_param,
                f"page_size must be a whole number from 1 to {self.max_page_size} (got {shown!r}).",
            )
        return int(value)

    def decode_cursor(self, request):
        encoded = self._single(request, self.cursor_query_param)
        if encoded is None:
            return None
        try:
            querystring = b64decode(encoded.encode("ascii"), validate=True).decode("ascii")
            tokens = parse.parse_qs(querystring, keep_blank_values=True, strict_parsing=True)
            offset = int(tokens.get("o", ["0"])[0])
            reverse = int(tokens.get("r", ["0"])[0])
            position = tokens.get("p", [None])[0]
            if not (0 <= offset <= self.offset_cutoff) or reverse not in (0, 1):
                raise ValueError
            if position is not None:
                self._check_position(position)
        except (TypeError, ValueError, UnicodeError, ValidationError):
            message = "Invalid cursor: it names no page; send back the `next` or `previous` link of a page as it is."
            raise ApplicationError(message, code="invalid_cursor", status=404, fields={self.cursor_query_param: [message]}) from None
        return Cursor(offset=offset, reverse=bool(reverse), position=position)

    def _check_position(self, position: str) -> None:
        """The position is compared with the ordering column: it has to be a value of it."""
        model = getattr(self, "_model", None)
        if model is None:
            return
        try:
            field = model._meta.get_field(self.ordering[0].lstrip("-"))
        except FieldDoesNotExist:
            return
        if field.to_python(position) is None:
            raise ValueError("empty position")

    def get_schema_operation_parameters(self, view):
        return [
            {
                "name": self.cursor_query_param,
                "required": False,
                "in": "query",
                "description": self.cursor_query_description,
                "schema": {"type": "string"},
            },
            {
                "name": self.page_size_query_param,
                "required": False,
                "in": "query",
                "description": f"Items per page, 1–{self.max_page_size}; anything else is a 400.",
                "schema": {"type": "integer", "minimum": 1, "maximum": self.max_page_size, "default": self.page_size},
            },
        ]
