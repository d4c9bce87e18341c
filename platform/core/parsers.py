"""Multipart parsing that refuses, rather than silently rewrites, a file name
with path components (`../../etc/passwd.csv`): the client gets a 400 saying why."""
from django.http.multipartparser import MultiPartParser as DjangoMultiPartParser
from django.http.multipartparser import MultiPartParserError
from rest_framework import parsers
from rest_framework.exceptions import ParseError


class _StrictFileNameParser(DjangoMultiPartParser):
    def sanitize_file_name(self, file_name):
        raw = (file_name or "").strip()
        if "/" in raw or "\\" in raw or raw in (".", "..") or "\x00" in raw:
            raise MultiPartParserError(
                f"Invalid file name {raw[:80]!r}: send a plain file name without folders or '..'."
            )
        return super().sanitize_file_name(file_name)


class StrictMultiPartParser(parsers.MultiPartParser):
    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        request = parser_context["request"]
        meta = request.META.copy()
        meta["CONTENT_TYPE"] = media_type
        try:
            parser = _StrictFileNameParser(meta, stream, request.upload_handlers, parser_context.get("encoding", "utf-8"))
            data, files = parser.parse()
            return parsers.DataAndFiles(data, files)
        except MultiPartParserError as exc:
            raise ParseError(str(exc)) from None
