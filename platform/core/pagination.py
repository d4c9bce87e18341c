from rest_framework.pagination import CursorPagination


class CreatedCursorPagination(CursorPagination):
    """Stable under inserts: newest first, opaque `cursor`, `page_size` up to 200."""

    ordering = ("-created_at", "-id")
    page_size_query_param = "page_size"
    max_page_size = 200
