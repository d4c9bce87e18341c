"""Streaming readers for uploaded datasets: CSV, TSV and JSONL, optionally gzip.

Free of Django. Memory stays flat: bytes flow raw file → (gunzip, capped) →
incremental decoder → csv/json one record at a time. Everything that makes a file
unusable raises DatasetFileError with an HTTP status, a stable code and a message
that names the line, the field or the limit.
"""
from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import re
import zlib
from dataclasses import dataclass, field
from typing import BinaryIO, Iterator

MAX_COLUMNS = 1000
MAX_FIELD_CHARS = 1_000_000
MAX_JSONL_LINE_CHARS = 2_000_000
MAX_NUMBER_CHARS = 100  # a JSON number longer than this is no label (Python refuses ints over 4,300 digits)
SNIFF_BYTES = 64 * 1024
GZIP_MAGIC = b"\x1f\x8b"
FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl"}
_FILENAME_OK = re.compile(r"^[^\x00-\x1f/\\]{1,255}$")

csv.field_size_limit(MAX_FIELD_CHARS)


class DatasetFileError(Exception):
    def __init__(self, message: str, *, code: str, status: int = 400, line: int | None = None, field: str = "file"):
        super().__init__(message)
        self.message, self.code, self.status, self.line, self.field = message, code, status, line, field


@dataclass
class FileInfo:
    format: str
    compressed: bool
    encoding: str = "utf-8"
    warnings: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)


@dataclass
class Record:
    line: int
    values: dict


@dataclass
class Rejected:
    line: int
    reason: str


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def check_filename(name: str) -> str:
    """The display name, or a 400: no paths, no traversal, no control characters."""
    # The pattern already excludes '/', '\\' and control characters.
    if not name or not _FILENAME_OK.match(name) or name.startswith(".."):
        raise DatasetFileError(
            "Invalid file name: it must be a plain name without folders, '..' or control characters.",
            code="invalid_filename",
        )
    return name


def detect_format(name: str) -> FileInfo:
    lower = name.lower()
    compressed = lower.endswith(".gz")
    stem = lower[:-3] if compressed else lower
    ext = "." + stem.rsplit(".", 1)[-1] if "." in stem else ""
    if ext not in FORMATS:
        raise DatasetFileError(
            f"Unsupported file type '{ext or name}': upload .csv, .tsv or .jsonl, optionally gzip-compressed (.gz).",
            code="unsupported_type", status=415,
        )
    return FileInfo(format=FORMATS[ext], compressed=compressed)


class _CappedReader(io.RawIOBase):
    """Reads from `inner`, failing once more than `limit` bytes came out (gzip bombs)."""

    def __init__(self, inner, limit: int):
        self.inner, self.limit, self.count = inner, limit, 0

    def readable(self):
        return True

    def readinto(self, buffer):
        try:
            data = self.inner.read(len(buffer))
        except EOFError:
            raise DatasetFileError(
                "The gzip stream is truncated: it ends before its end marker. Compress the file again.",
                code="gzip_truncated",
            ) from None
        except (gzip.BadGzipFile, zlib.error, OSError) as exc:
            raise DatasetFileError(f"The gzip stream is corrupt ({exc}).", code="gzip_corrupt") from None
        self.count += len(data)
        if self.count > self.limit:
            raise DatasetFileError(
                f"The decompressed data exceeds the limit of {human_bytes(self.limit)}; upload a smaller file.",
                code="decompressed_too_large", status=413,
            )
        buffer[: len(data)] = data
        return len(data)


class _Prefixed(io.RawIOBase):
    """`prefix` bytes, then the rest of `inner` — to sniff without seeking."""

    def __init__(self, prefix: bytes, inner):
        self.prefix, self.inner = prefix, inner

    def readable(self):
        return True

    def readinto(self, buffer):
        if self.prefix:
            n = min(len(buffer), len(self.prefix))
            buffer[:n], self.prefix = self.prefix[:n], self.prefix[n:]
            return n
        data = self.inner.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


# What real Western files are, in order: UTF-8 (with or without BOM), UTF-16
# with a BOM, then Windows-1252 (a superset of Latin-1's printable range).
# Another single-byte encoding is used only when its text is clearly cleaner.
WESTERN_MESS_OK = 0.02
OTHER_ENCODING_MARGIN = 0.05
MAX_CHAOS = 0.25
MAX_CONTROL_SHARE = 0.01
_CONTROL = re.compile("[\x01-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_WESTERN = {"cp1252", "iso8859-1", "iso8859-15", "cp850", "mac-roman", "ascii", "utf-8"}  # codecs names


def _encoding_label(encoding: str) -> str:
    return {"cp1252": "Windows-1252 (cp1252)", "latin_1": "Latin-1 (ISO-8859-1)"}.get(encoding, encoding)


def _detect_encoding(sample: bytes, info: FileInfo) -> str:
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        info.warnings.append("The file was UTF-16; it was converted to UTF-8.")
        return "utf-16"
    nul = sample.find(b"\x00")
    if nul != -1:
        raise DatasetFileError(
            f"This is not a text file: it contains binary data (a NUL byte at offset {nul}).",
            code="binary_content", status=415,
        )
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes
    from charset_normalizer.md import mess_ratio

    try:
        encoding, decoded = "cp1252", sample.decode("cp1252")
    except UnicodeDecodeError:  # the five bytes cp1252 leaves undefined: Latin-1 reads them
        encoding, decoded = "latin_1", sample.decode("latin_1")
    controls = len(_CONTROL.findall(decoded))
    if controls > MAX_CONTROL_SHARE * len(decoded):
        raise DatasetFileError(
            f"This file is not UTF-8 and cannot be read as text in any encoding Lathe recognises ({controls} control "
            "characters in its first 64 KB; it may be binary). Save it as UTF-8.",
            code="unknown_encoding", status=415,
        )
    mess = mess_ratio(decoded, 1.0)
    detected = None
    if mess > WESTERN_MESS_OK:
        best = from_bytes(sample).best()
        if best is not None and best.chaos <= MAX_CHAOS and best.chaos + OTHER_ENCODING_MARGIN < mess:
            detected = codecs.lookup(best.encoding).name
    if detected and detected not in _WESTERN:
        info.warnings.append(
            f"The file is not UTF-8: its characters read clearly best as {detected}, so it was converted from "
            f"{detected} to UTF-8. Check accented characters in the preview; if they look wrong, save the file as UTF-8.")
        return detected
    if mess > MAX_CHAOS:
        raise DatasetFileError(
            "This file is not UTF-8 and its encoding could not be recognised (it may be binary). Save it as UTF-8.",
            code="unknown_encoding", status=415,
        )
    info.warnings.append(
        f"The file is not UTF-8: it was read as {_encoding_label(encoding)} and converted to UTF-8. "
        "Check accented characters in the preview; if they look wrong, save the file as UTF-8.")
    return codecs.lookup(encoding).name


def _read_up_to(stream, size: int) -> bytes:
    """Up to `size` bytes; fewer only at the end of the stream (raw reads may be short)."""
    chunks, remaining = [], size
    while remaining > 0:
        buffer = bytearray(remaining)
        n = stream.readinto(buffer)
        if not n:
            break
        chunks.append(bytes(buffer[:n]))
        remaining -= n
    return b"".join(chunks)


def open_text(raw: BinaryIO, info: FileInfo, *, max_decompressed_bytes: int) -> io.TextIOWrapper:
    head = raw.read(2)
    stream = _Prefixed(head, raw)
    if head == GZIP_MAGIC:
        if not info.compressed:
            info.warnings.append("The file was gzip-compressed without a .gz name; it was decompressed.")
        info.compressed = True
        stream = _CappedReader(gzip.GzipFile(fileobj=io.BufferedReader(stream)), max_decompressed_bytes)
    elif info.compressed:
        raise DatasetFileError("The file name ends in .gz but the content is not gzip-compressed.", code="gzip_corrupt")
    else:
        stream = _CappedReader(stream, max_decompressed_bytes)
    sample = _read_up_to(stream, SNIFF_BYTES)
    buffered = io.BufferedReader(_Prefixed(sample, stream), buffer_size=SNIFF_BYTES)
    if not sample.strip():
        raise DatasetFileError("The file is empty.", code="empty_file")
    info.encoding = _detect_encoding(sample, info)
    return io.TextIOWrapper(buffered, encoding=info.encoding, errors="strict", newline="")


def _decode_guard(iterator, info: FileInfo, line_of):
    try:
        yield from iterator
    except UnicodeDecodeError as exc:
        raise DatasetFileError(
            f"Near line {line_of()}: bytes that are not valid {info.encoding} ({exc.reason}). Save the file as UTF-8.",
            code="invalid_encoding", line=line_of(),
        ) from None


def iter_records(text: io.TextIOWrapper, info: FileInfo) -> Iterator[Record | Rejected]:
    if info.format == "jsonl":
        yield from _iter_jsonl(text, info)
    else:
        yield from _iter_delimited(text, info, "\t" if info.format == "tsv" else ",")


# Text no row may hold: NUL (databases refuse it; spreadsheets and C tools cut the
# text there) and unpaired UTF-16 surrogates (JSON "\\ud800": not encodable as UTF-8).
_BAD_CHAR = re.compile("[\x00\ud800-\udfff]")


def _bad_char_reason(text: str, column) -> str | None:
    found = _BAD_CHAR.search(text)
    if found is None:
        return None
    where = f"column '{str(column)[:100]}'" if column is not None else "a column name"
    if found.group() == "\x00":
        return f"{where} contains a NUL character (\\u0000)"
    return f"{where} contains an unpaired surrogate (\\u{ord(found.group()):04x}), which is not valid Unicode text"


def _bad_text_in_row(values: dict) -> str | None:
    """The first NUL or unpaired surrogate anywhere in a record (keys, values,
    nested lists and objects), as a rejection reason naming its column."""
    for key, value in values.items():
        reason = _bad_char_reason(key, None) if isinstance(key, str) else None
        if reason:
            return reason
        stack = [value]
        while stack:  # iterative: nesting depth is already bounded by the JSON parser
            item = stack.pop()
            if isinstance(item, str):
                reason = _bad_char_reason(item, key)
                if reason:
                    return reason
            elif isinstance(item, dict):
                stack.extend(item.keys())
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)
    return None


def _check_width(count: int, line: int) -> None:
    if count > MAX_COLUMNS:
        raise DatasetFileError(
            f"Line {line} has {count} columns; at most {MAX_COLUMNS} are allowed.", code="too_many_columns", line=line,
        )


def _iter_delimited(text, info: FileInfo, delimiter: str):
    reader = csv.reader(text, delimiter=delimiter, strict=False)
    rows = _decode_guard(reader, info, lambda: reader.line_num)
    try:
        header = next(rows)
        while header == []:
            header = next(rows)
    except StopIteration:
        raise DatasetFileError("The file is empty.", code="empty_file") from None
    except csv.Error as exc:
        raise DatasetFileError(f"Line 1: {exc}.", code="malformed", line=1) from None
    _check_width(len(header), reader.line_num)
    header = [h.strip() for h in header]
    for name in header:
        if _BAD_CHAR.search(name):
            raise DatasetFileError("The header row has a column name with a NUL character; remove it.",
                                   code="bad_header", line=1)
    if any(not h for h in header):
        raise DatasetFileError("The header row has an empty column name.", code="bad_header", line=1)
    duplicates = sorted({h for h in header if header.count(h) > 1})
    if duplicates:
        raise DatasetFileError(f"The header names a column twice: {', '.join(duplicates)}.", code="bad_header", line=1)
    info.columns = header
    previous_end = reader.line_num
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except csv.Error as exc:
            line = reader.line_num
            raise DatasetFileError(f"Line {line}: {exc}.", code="malformed", line=line) from None
        start, previous_end = previous_end + 1, reader.line_num
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        _check_width(len(row), start)
        if len(row) != len(header):
            yield Rejected(start, f"expected {len(header)} fields, found {len(row)}")
            continue
        values = dict(zip(header, row))
        if any("\x00" in cell for cell in row):  # anywhere in the file, not only the sniffed head
            yield Rejected(start, _bad_text_in_row(values))
            continue
        yield Record(start, values)


class _NumberTooLong(Exception):
    pass


def _bounded_number(convert):
    def parse(text: str):
        if len(text) > MAX_NUMBER_CHARS:
            raise _NumberTooLong(len(text))
        return convert(text)
    return parse


_JSON = json.JSONDecoder(parse_int=_bounded_number(int), parse_float=_bounded_number(float))


def parse_json(text: str):
    """(value, None) or (None, rejection reason): never an exception, whatever the line."""
    try:
        return _JSON.decode(text), None
    except json.JSONDecodeError as exc:
        return None, f"invalid JSON ({exc.msg} at column {exc.colno})"
    except RecursionError:
        return None, "invalid JSON (nested too deeply)"
    except _NumberTooLong as exc:
        return None, f"a number with {exc.args[0]:,} characters; at most {MAX_NUMBER_CHARS} are accepted"


def _iter_jsonl(text, info: FileInfo):
    line_no, seen = 0, {}
    lines = _decode_guard(iter(lambda: text.readline(MAX_JSONL_LINE_CHARS + 1), ""), info, lambda: line_no + 1)
    for raw_line in lines:
        line_no += 1
        if len(raw_line) > MAX_JSONL_LINE_CHARS:
            raise DatasetFileError(f"Line {line_no} is longer than {MAX_JSONL_LINE_CHARS:,} characters.", code="line_too_long", line=line_no)
        stripped = raw_line.strip()
        if not stripped:
            continue
        value, problem = parse_json(stripped)
        if problem:
            yield Rejected(line_no, problem)
            continue
        if not isinstance(value, dict):
            yield Rejected(line_no, f"expected a JSON object, found {type(value).__name__}")
            continue
        _check_width(len(value), line_no)
        problem = _bad_text_in_row(value)
        if problem:
            yield Rejected(line_no, problem)
            continue
        for key in value:
            if key not in seen:
                seen[key] = None
                if len(seen) > MAX_COLUMNS:
                    _check_width(len(seen), line_no)
        info.columns = list(seen)
        yield Record(line_no, value)
