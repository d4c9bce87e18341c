"""Every URL pattern the project serves, for the tests that check each route is covered (hostile input,
the /v1/ schema): (route as written in urls.py, the pattern, its view class or None for a function view)."""
from __future__ import annotations

from collections.abc import Iterator

from django.urls import URLPattern, URLResolver, get_resolver


def url_patterns() -> Iterator[tuple[str, URLPattern, type | None]]:
    def walk(patterns, prefix):
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern):
                view_class = getattr(pattern.callback, "cls", None) or getattr(pattern.callback, "view_class", None)
                yield route, pattern, view_class

    yield from walk(get_resolver().url_patterns, "")
