"""A study's private key (`private/key.json`): its group names and reading it back.

The bottom of the study package's imports: build writes the key, analyze and publish read it, and none of
them imports another for it (build -> publish -> analyze -> build was a cycle).
"""
from __future__ import annotations

import json
from pathlib import Path

REAL = "real"                  # group name of the real (ground-truth) clips in the key
GOLD = "__gold__"              # group name of gold clips in the key


def load_key(study_dir: str | Path) -> dict:
    """The private key of a study; clear error when the folder is not a built study."""
    p = Path(study_dir) / "private" / "key.json"
    if not p.is_file():
        raise FileNotFoundError(f"{p} not found: --key must be the STUDY_DIR written by `build`")
    key = json.loads(p.read_text(encoding="utf-8"))
    for field in ("config", "items", "tasks", "hits"):
        if field not in key:
            raise ValueError(f"{p}: missing {field!r}; was it written by this version of eval.study build?")
    return key


__all__ = ["GOLD", "REAL", "load_key"]
