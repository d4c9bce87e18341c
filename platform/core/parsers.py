"""Request parsing for the JSON API.

- JSON (`parse_json`, used by every endpoint's `JSONParser` and by the Stripe
  webhook): a body nested deeper than MAX_JSON_DEPTH, a number no field can hold
  (1e400, NaN, Infinity, an integer beyond 64 bits or with hundreds of digits)
  or a NUL character in a string is refused with a 400 naming where it is.
- Multipart: a file name with path components (`../../etc/passwd.csv`) is
  refused, rather than silently rewritten, with a 400 saying why.

Bodies over DATA_UPLOAD_MAX_MEMORY_SIZE are answered 413 (core.exceptions).
"""
from __future__ import annotations

import json
import math

from django.http.multipartparser import MultiPartParser as DjangoMultiPartParser
from django.http.multipartparser import MultiPartParserError
from rest_framework import parsers
from rest_framework.exceptions import ParseError

from .errors import ApplicationError

# The limits every JSON body is held to (docs/api.md, "Errors").
MAX_JSON_DEPTH = 64  # objects/arrays inside one another
MAX_JSON_INTEGER = 2**63 - 1  # no field or database column holds more (signed 64-bit)
_MAX_INTEGER_DIGITS = len(str(MAX_JSON_INTEGER))  # longer literals are refused before int() sees them


class JSONBodyError(ApplicationError):
    """A body that is not JSON, or JSON no endpoint can take (400, code parse_error, as DRF's ParseError)."""

    def __init__(self, detail: str, *, path: str = ""):
        super().__init__(f"{path}: {detail}" if path else detail, code="parse_error",
                         fields={path: [detail]} if path else None)


class _Unrepresentable:
    """A number literal no field can hold, kept as written so the check below can
    name where it was (the decoder's hooks do not know the path)."""

    __slots__ = ("literal",)

    def __init__(self, literal: str):
        self.literal = literal

    def shown(self) -> str:
        return self.literal if len(self.literal) <= 24 else f"{self.literal[:12]}…({len(self.literal)} characters)"


def _parse_int(literal: str):
    if len(literal.lstrip("-")) > _MAX_INTEGER_DIGITS:
        return _Unrepresentable(literal)
    value = int(literal)
    return value if -MAX_JSON_INTEGER <= value <= MAX_JSON_INTEGER else _Unrepresentable(literal)


def _parse_float(literal: str):
    value = float(literal)
    return value if math.isfinite(value) else _Unrepresentable(literal)


def _join(path: str, key) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else str(key))


def _check_text(text: str, path: str, what: str) -> None:
    """No NUL and no lone surrogate (\\ud800): neither can be stored or sent on as text."""
    if "\x00" in text:
        raise JSONBodyError(f"NUL characters (\\u0000) are not allowed in {what}.", path=path)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise JSONBodyError(f"unpaired surrogates (\\ud800–\\udfff) are not allowed in {what}.",
                                path=path) from None


def _check(document) -> None:
    """Depth, numbers and NUL characters, walked without recursion."""
    stack = [(document, "", 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, str):
            _check_text(value, path, "strings")
        elif isinstance(value, _Unrepresentable):
            raise JSONBodyError(
                f"the number {value.shown()} is out of range (numbers must be finite, "
                f"integers between -{MAX_JSON_INTEGER} and {MAX_JSON_INTEGER}).", path=path)
        elif isinstance(value, (dict, list)):
            if depth >= MAX_JSON_DEPTH:
                raise JSONBodyError(f"The JSON is nested deeper than {MAX_JSON_DEPTH} levels, the limit.")
            if isinstance(value, dict):
                for key, item in value.items():
                    _check_text(key, path, "keys")
                    stack.append((item, _join(path, key), depth + 1))
            else:
                stack.extend((item, _join(path, index), depth + 1) for index, item in enumerate(value))


def parse_json(raw: bytes | str, *, what: str = "The request body"):
    """The decoded document, or a JSONBodyError (400) saying what is wrong and where."""
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JSONBodyError(f"{what} is not UTF-8 (byte {exc.start}).") from None
    try:
        document = json.loads(raw, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_Unrepresentable)
    except RecursionError:
        raise JSONBodyError(f"The JSON is nested deeper than {MAX_JSON_DEPTH} levels, the limit.") from None
    except ValueError as exc:  # json.JSONDecodeError names the line and column
        raise JSONBodyError(f"{what} is not valid JSON: {exc}.") from None
    _check(document)
    return document


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser held to parse_json's limits (DEFAULT_PARSER_CLASSES)."""

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = parsers.get_encoding(parser_context or {})
        raw = stream.read()
        if encoding.lower().replace("_", "-") not in ("utf-8", "utf8"):
            try:
                raw = raw.decode(encoding)
            except (UnicodeDecodeError, LookupError):
                raise JSONBodyError(f"The request body is not {encoding}.") from None
        return parse_json(raw)


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
