"""CSV output that a spreadsheet opens as data, never as formulas.

Uploaded text may begin with `=`, `+`, `-`, `@`, a tab or a carriage return (a
tweet "@united ...", a bullet "- fast delivery"): it is accepted as ordinary
text on the way in and neutralised here on the way out, with OWASP's rule for
CSV injection: such a cell gets a leading apostrophe, and every cell is quoted
(embedded quotes doubled). Every CSV Lathe writes (dataset previews, label
reports, rejected rows; the worker's prediction files) goes through `write_csv` or
`csv_response`, so the rule lives in one place: workers/csv_safe.py (Django-free, the worker writes
with it too), re-exported here.

Free of Django at import time (the preflight, which counts such cells, imports it).
"""
from __future__ import annotations

import csv
import io
from typing import Iterable, Iterator, Sequence

from workers.csv_safe import FORMULA_LEADERS, looks_like_formula, neutralize, write_csv  # noqa: F401  the rule, once

UTF8_BOM = "\ufeff"  # Excel reads UTF-8 (accents) only with it


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
