"""CSV files a spreadsheet can open safely: the one CSV writer of the project (atomic, formulas neutralised).

A cell that starts with = + - @, a tab or a carriage return is run as a formula by Excel, LibreOffice and
Google Sheets (CSV injection: `=HYPERLINK(...)` in a worker id, a file name or a caption). Such text cells
get a leading apostrophe, which spreadsheets show as plain text; numbers stay numbers, so -3.2, +1 and
1e-5 are written unchanged.
"""
from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from mmdiff.atomic import write_text

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|nan)", re.IGNORECASE)


def safe_cell(value: Any) -> Any:
    """`value` as a spreadsheet shows it without running it: numbers as they are, formula-like text quoted."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    text = str(value)
    if text.startswith(FORMULA_START) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def safe_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: safe_cell(v) for k, v in row.items()}


def csv_text(header: Sequence[str], rows: Iterable[dict[str, Any]], lineterminator: str = "\r\n") -> str:
    """CSV with `header` as columns (a row's key not in the header is an error); header and cells through safe_cell."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator=lineterminator).writerow([safe_cell(h) for h in header])
    w = csv.DictWriter(buf, fieldnames=list(header), extrasaction="raise", lineterminator=lineterminator)
    for r in rows:
        w.writerow(safe_row(r))
    return buf.getvalue()


def write_csv(path: str | os.PathLike, header: Sequence[str], rows: Iterable[dict[str, Any]],
              lineterminator: str = "\r\n") -> Path:
    """Write the CSV atomically (utf-8, no BOM; \\r\\n line ends as MTurk and the csv module write them)."""
    return write_text(path, csv_text(header, rows, lineterminator))

