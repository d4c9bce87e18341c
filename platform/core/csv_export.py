"""CSV output that a spreadsheet opens as data, never as formulas.

Uploaded text may begin with `=`, `+`, `-`, `@`, a tab or a carriage return (a
tweet "@united ...", a bullet "- fast delivery"): it is accepted as ordinary
text on the way in and neutralised here on the way out, with OWASP's rule for
CSV injection: such a cell gets a leading apostrophe, and every cell is quoted
(embedded quotes doubled). Every CSV Lathe writes (dataset previews, label
reports, rejected rows, later prediction files) goes through `write_csv` or
`csv_response`, so the rule lives in one place.

Free of Django at import time (the preflight, which counts such cells, imports it).
"""
from __future__ import annotations

import csv
import io
import json
from typing import Iterable, Iterator, Sequence

# OWASP "CSV Injection": cells starting with these are run by spreadsheets.
FORMULA_LEADERS = ("=", "+", "-", "@", "\t", "\r")
UTF8_BOM = "\ufeff"  # Excel reads UTF-8 (accents) only with it


def looks_like_formula(value) -> bool:
    return isinstance(value, str) and value.startswith(FORMULA_LEADERS)


def neutralize(value):
    """The cell as written: text that a spreadsheet would execute gets a leading
    `'`; numbers stay numbers; lists and dicts become JSON; None is empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return value
    if not isinstance(value, str):
        value = json.dumps(value, ensure_ascii=False)
    return "'" + value if value.startswith(FORMULA_LEADERS) else value


def write_csv(fh, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    """Header then rows to a text file handle, every cell neutralised and quoted."""
    writer = csv.writer(fh, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow([neutralize(h) for h in header])
    for row in rows:
        writer.writerow([neutralize(cell) for cell in row])


def csv_text(header: Sequence[str], rows: Iterable[Sequence], *, bom: bool = True) -> Iterator[str]:
    """The CSV as chunks of text (a line each), for streaming responses."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    if bom:
        yield UTF8_BOM
    for row in _with_header(header, rows):
        writer.writerow([neutralize(cell) for cell in row])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def _with_header(header, rows):
    yield header
    yield from rows


def csv_response(filename: str, header: Sequence[str], rows: Iterable[Sequence]):
    """A download (attachment) of the CSV, streamed."""
    from django.http import StreamingHttpResponse

    response = StreamingHttpResponse((chunk.encode("utf-8") for chunk in csv_text(header, rows)),
                                     content_type="text/csv; charset=utf-8")
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in filename) or "export.csv"
    response["Content-Disposition"] = f'attachment; filename="{safe}"'
    response["X-Content-Type-Options"] = "nosniff"
    return response
