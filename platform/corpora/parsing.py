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
    # How the encoding was chosen: {"encoding", "name", "source": bom|given|detected,
    # "confidence": certain|high|medium|low, "reason", "needs_confirmation"}.
    encoding_detection: dict = field(default_factory=dict)


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
CONFIDENCE_LEVELS = ("certain", "high", "medium", "low")
# Below this the version is worth a look before it is kept (the dashboard holds it for confirmation).
CONFIRM_BELOW = "high"
_WIDE_ENCODINGS = ("utf-16", "utf-32")  # where NUL bytes are ordinary


def _encoding_label(encoding: str) -> str:
    return {"cp1252": "Windows-1252 (cp1252)", "latin_1": "Latin-1 (ISO-8859-1)", "iso8859-1": "Latin-1 (ISO-8859-1)",
            "utf-8": "UTF-8", "utf-8-sig": "UTF-8 (with BOM)", "utf-16": "UTF-16"}.get(encoding, encoding)


def _detection(info: FileInfo, encoding: str, source: str, confidence: str, reason: str) -> str:
    info.encoding_detection = {
        "encoding": encoding, "name": _encoding_label(encoding), "source": source, "confidence": confidence,
        "reason": reason,
        "needs_confirmation": CONFIDENCE_LEVELS.index(confidence) > CONFIDENCE_LEVELS.index(CONFIRM_BELOW)}
    return encoding


def check_encoding(name: str) -> str:
    """The codec's canonical name for an encoding the user named, or a 400 on the `encoding` field."""
    name = (name or "").strip()
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        raise DatasetFileError(
            f"Unknown encoding '{name[:40]}' (the encoding field): name a Python codec such as utf-8, utf-8-sig, "
            "cp1252, latin-1, iso8859-15, cp1251 or utf-16, or leave it blank to detect the encoding.",
            code="unknown_encoding_name", field="encoding") from None
    if not getattr(info, "_is_text_encoding", True):
        raise DatasetFileError(
            f"'{name[:40]}' (the encoding field) is not a text encoding but a {info.name} transform; name a text "
            "encoding such as utf-8, cp1252 or utf-16.", code="unknown_encoding_name", field="encoding")
    return info.name


def _refuse_binary(sample: bytes) -> None:
    nul = sample.find(b"\x00")
    if nul != -1:
        raise DatasetFileError(
            f"This is not a text file: it contains binary data (a NUL byte at offset {nul}).",
            code="binary_content", status=415,
        )


def _given_encoding(sample: bytes, encoding: str, info: FileInfo) -> str:
    """The encoding the user named: no guessing. A UTF-8 BOM is skipped; any
    leading U+FEFF is dropped by LineReader."""
    if not encoding.startswith(_WIDE_ENCODINGS):
        _refuse_binary(sample)
    if encoding == "utf-8" and sample.startswith(codecs.BOM_UTF8):
        encoding = "utf-8-sig"
    return _detection(info, encoding, "given", "certain", "named in the upload (the encoding field)")


def _detect_encoding(sample: bytes, info: FileInfo, *, whole_file: bool) -> str:
    if sample.startswith(codecs.BOM_UTF8):
        return _detection(info, "utf-8-sig", "bom", "certain", "the file starts with a UTF-8 byte-order mark")
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        info.warnings.append("The file was UTF-16 (certain: it starts with a byte-order mark); it was converted to UTF-8.")
        return _detection(info, "utf-16", "bom", "certain", "the file starts with a UTF-16 byte-order mark")
    _refuse_binary(sample)
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
        if sample.isascii():
            if whole_file:
                return _detection(info, "utf-8", "detected", "certain",
                                  "the file is plain ASCII, which UTF-8 and every Western encoding read the same")
            return _detection(info, "utf-8", "detected", "high", f"the first {SNIFF_BYTES // 1024} KB are plain ASCII")
        return _detection(info, "utf-8", "detected", "high",
                          "its accented characters form valid UTF-8 sequences, which other encodings almost never do")
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
    detected = best = None
    if mess > WESTERN_MESS_OK:
        best = from_bytes(sample).best()
        if best is not None and best.chaos <= MAX_CHAOS and best.chaos + OTHER_ENCODING_MARGIN < mess:
            detected = codecs.lookup(best.encoding).name
    advice = ("Check accented characters in the preview; if they look wrong, name the file's encoding (the "
              "encoding field) or save it as UTF-8.")
    if detected and detected not in _WESTERN:
        confidence = "medium" if best.chaos <= WESTERN_MESS_OK else "low"
        info.warnings.append(
            f"The file is not UTF-8: its characters read clearly best as {detected}, with {confidence} confidence, so "
            f"it was converted from {detected} to UTF-8. {advice}")
        return _detection(info, detected, "detected", confidence,
                          f"not UTF-8; its text reads cleanest as {detected} (mess ratio {best.chaos:.1%} against "
                          f"{mess:.1%} for Windows-1252)")
    if mess > MAX_CHAOS:
        raise DatasetFileError(
            "This file is not UTF-8 and its encoding could not be recognised (it may be binary). Save it as UTF-8.",
            code="unknown_encoding", status=415,
        )
    confidence = "medium" if mess <= WESTERN_MESS_OK else "low"
    info.warnings.append(
        f"The file is not UTF-8: it was read as {_encoding_label(encoding)}, with {confidence} confidence, and "
        f"converted to UTF-8. {advice}")
    name = codecs.lookup(encoding).name
    return _detection(info, name, "detected", confidence,
                      "not UTF-8; read as Western European text, the usual encoding of files saved by Windows and "
                      "Excel. Other single-byte encodings (ISO-8859-15, cp1250, Mac Roman) would read some accented "
                      "letters differently: only the text can tell them apart" if confidence == "medium" else
                      f"not UTF-8, and its text reads poorly as Windows-1252 too (mess ratio {mess:.1%})")


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


# Line ends, as editors count them: \r\n, \n, and a lone \r.
_LINE_END = re.compile("\r\n|\r|\n")
_COMPLETE_LINE = re.compile("[^\r\n]*(?:\r\n|\r|\n)")
DECODE_CHUNK_BYTES = 64 * 1024


class LineReader:
    """Decoded text, one physical line at a time (its line end kept): the one
    place lines are counted. A line ends at \r\n, \n or a lone \r — what editors
    count — so `line_num` (the line last handed out, 1-based) is the number an
    editor shows. Bytes that do not decode raise a DatasetFileError naming the
    exact line and byte offset (not the position the reader had reached)."""

    def __init__(self, raw, info: FileInfo):
        self.raw, self.info = raw, info
        self.line_num = 0
        self._decoder = codecs.getincrementaldecoder(info.encoding)(errors="strict")
        self._lines: list[str] = []  # complete lines not handed out yet, last first
        self._tail = ""  # decoded text after them: a line begun (or a \r that may start a \r\n)
        self._eof, self._bytes_in, self._at_line_start, self._first = False, 0, True, True

    def __iter__(self):
        while True:  # readline's fast path, inlined: csv.reader pulls every line through here
            lines = self._lines
            if lines:
                line = lines.pop()
                if self._at_line_start:
                    self.line_num += 1
                self._at_line_start = line[-1] in "\r\n"
            else:
                line = self.readline()
                if not line:
                    return
            yield line

    def _fill(self) -> bool:
        """Decode the next chunk into complete lines; False at the end."""
        if self._eof:
            return False
        data = self.raw.read(DECODE_CHUNK_BYTES)
        state = self._decoder.getstate()
        try:
            decoded = self._decoder.decode(data, final=not data)
        except UnicodeDecodeError as exc:
            raise self._decode_error(exc, data, state) from None
        self._bytes_in += len(data)
        self._eof = not data
        if self._first and decoded:
            self._first = False
            decoded = decoded[1:] if decoded[0] == "\ufeff" else decoded  # a byte-order mark the codec kept
        text = self._tail + decoded
        end = len(text) - 1 if not self._eof and text.endswith("\r") else len(text)  # that \r may begin a \r\n
        cut = max(text.rfind("\n", 0, end), text.rfind("\r", 0, end)) + 1  # after the last line end known
        lines = _COMPLETE_LINE.findall(text, 0, cut)
        self._tail = text[cut:]
        if self._eof and self._tail:
            lines.append(self._tail)  # the last line, without a line end
            self._tail = ""
        lines.reverse()
        self._lines = lines
        return True

    def readline(self, limit: int = -1) -> str:
        """The next line with its end, at most `limit` characters of it; "" at the end."""
        parts, size = [], 0
        while not self._lines:
            if self._tail and self._tail[-1] != "\r":  # a long line: set its start aside, the buffer stays small
                parts.append(self._tail)
                size += len(self._tail)
                self._tail = ""
            if 0 <= limit <= size or not self._fill():
                break
        if self._lines:
            parts.append(self._lines.pop())
        line = "".join(parts)
        cut = 0 <= limit < len(line)
        if cut:
            line, rest = line[:limit], line[limit:]
            if rest[-1:] in ("\n", "\r"):
                self._lines.append(rest)
            else:
                self._tail = rest + self._tail
        if line:
            if self._at_line_start:
                self.line_num += 1
            self._at_line_start = not cut and line[-1] in "\r\n"
        return line

    def _decode_error(self, exc: UnicodeDecodeError, data: bytes, state) -> "DatasetFileError":
        # exc.object is the decoder's pending bytes followed by `data`: it ends where `data` ends.
        offset = self._bytes_in + len(data) - len(exc.object) + exc.start
        prefix = codecs.getincrementaldecoder(self.info.encoding)(errors="replace")
        try:
            prefix.setstate((b"", state[1]))
        except (TypeError, ValueError, AttributeError):
            pass
        before = self._tail + prefix.decode(exc.object[: exc.start])
        handed_out = self.line_num - (0 if self._at_line_start else 1)  # complete lines
        line = handed_out + len(self._lines) + len(_LINE_END.findall(before)) + 1
        bad = " ".join(f"0x{b:02X}" for b in exc.object[exc.start: min(exc.end, exc.start + 4)])
        detection = self.info.encoding_detection
        if detection.get("source") == "given":
            advice, field = "Name the encoding the file was saved in, or save it as UTF-8.", "encoding"
        elif detection.get("source") == "bom":
            advice, field = "The file starts with a byte-order mark for this encoding, so this part is damaged.", "file"
        else:
            advice, field = (f"The encoding was detected from the first {SNIFF_BYTES // 1024} KB; name the file's "
                             "encoding (the encoding field) or save it as UTF-8."), "file"
        return DatasetFileError(
            f"Line {line} (byte offset {offset:,}): {bad} is not valid {self.info.encoding} ({exc.reason}). {advice}",
            code="invalid_encoding", line=line, field=field)


def open_text(raw: BinaryIO, info: FileInfo, *, max_decompressed_bytes: int, encoding: str | None = None) -> LineReader:
    """The upload as decoded lines. `encoding`, when the user named one (see
    check_encoding), is used as given; otherwise it is detected."""
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
    if encoding:
        info.encoding = _given_encoding(sample, encoding, info)
    else:
        info.encoding = _detect_encoding(sample, info, whole_file=len(sample) < SNIFF_BYTES)
    return LineReader(buffered, info)


def iter_records(text: LineReader, info: FileInfo) -> Iterator[Record | Rejected]:
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
    rows = reader  # line numbers come from `text` (LineReader), the one place lines are counted
    try:
        header = next(rows)
        while header == []:
            header = next(rows)
    except StopIteration:
        raise DatasetFileError("The file is empty.", code="empty_file") from None
    except csv.Error as exc:
        raise DatasetFileError(f"Line 1: {exc}.", code="malformed", line=1) from None
    _check_width(len(header), text.line_num)
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
    previous_end = text.line_num
    while True:
        try:
            row = next(rows)
        except StopIteration:
            return
        except csv.Error as exc:
            line = previous_end + 1  # where the record that failed begins
            raise DatasetFileError(f"Line {line}: {exc}.", code="malformed", line=line) from None
        start, previous_end = previous_end + 1, text.line_num
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
    seen = {}
    for raw_line in iter(lambda: text.readline(MAX_JSONL_LINE_CHARS + 1), ""):
        line_no = text.line_num
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
