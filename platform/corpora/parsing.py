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

    best = from_bytes(sample).best()
    if best is None or best.chaos > 0.25:
        raise DatasetFileError(
            "This file is not UTF-8 and its encoding could not be recognised (it may be binary). Save it as UTF-8.",
            code="unknown_encoding", status=415,
        )
    encoding = codecs.lookup(best.encoding).name
    info.warnings.append(f"The file was encoded as {encoding}, not UTF-8; it was converted. Check accented characters.")
    return encoding


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
        yield Record(start, dict(zip(header, row)))


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
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError as exc:
            yield Rejected(line_no, f"invalid JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(value, dict):
            yield Rejected(line_no, f"expected a JSON object, found {type(value).__name__}")
            continue
        _check_width(len(value), line_no)
        for key in value:
            if key not in seen:
                seen[key] = None
                if len(seen) > MAX_COLUMNS:
                    _check_width(len(seen), line_no)
        info.columns = list(seen)
        yield Record(line_no, value)
