"""Atomic file writing (temp file in the same folder + os.replace) for every study output."""
from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


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
    return write_text_atomic(path, json.dumps(_no_nan(obj), indent=2, allow_nan=False) + "\n")


def write_csv_atomic(path: Path, header: Sequence[str], rows: Iterable[dict]) -> Path:
    """CSV with `header` as columns (utf-8, no BOM, \\r\\n line ends as MTurk writes them)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(header), extrasaction="raise")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    return write_text_atomic(path, buf.getvalue())
