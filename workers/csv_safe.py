"""CSV cells that a spreadsheet opens as data, never as formulas (OWASP "CSV Injection"): a cell that
begins with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading apostrophe, and every cell is
quoted. Django-free, so the worker writes its prediction files with it; platform/core/csv_export.py (every
CSV the web side writes) takes the rule from here, so it lives in one place."""
from __future__ import annotations

import csv
import json
from typing import Iterable, Sequence

# OWASP "CSV Injection": cells starting with these are run by spreadsheets.
FORMULA_LEADERS = ("=", "+", "-", "@", "\t", "\r")


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
