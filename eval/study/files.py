"""The study's JSON and CSV outputs, written atomically through mmdiff.atomic."""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

from mmdiff.atomic import write_text
from mmdiff.csvsafe import write_csv


def _no_nan(obj: object) -> object:
    """NaN/inf -> None so the file is strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _no_nan(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_no_nan(v) for v in obj]
    return obj


def write_json_atomic(path: Path, obj: object) -> Path:
    return write_text(path, json.dumps(_no_nan(obj), indent=2, allow_nan=False) + "\n")


def write_csv_atomic(path: Path, header: Sequence[str], rows: Iterable[dict]) -> Path:
    """CSV with `header` as columns (utf-8, no BOM, \\r\\n line ends as MTurk writes them), formulas
    neutralised (mmdiff.csvsafe: worker ids and answers are text anyone can type)."""
    return write_csv(path, header, rows)
