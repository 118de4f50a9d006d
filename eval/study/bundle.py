"""Zip a built study for handing over: batch CSVs, templates, media and previews; the private key and the
analysis (worker IDs, answers) apart."""
from __future__ import annotations

import os
from pathlib import Path

from mmdiff.atomic import temp_target, write_zip
from mmdiff.outdir import is_bookkeeping

PRIVATE = "private"
ANALYSIS = "analysis"      # eval.study analyze's default output: worker IDs and their answers


def zip_study(study_dir: str | os.PathLike, out_zip: str | os.PathLike, include_private: bool = False) -> Path:
    """Write every file of `study_dir` into `out_zip` (paths relative to the study folder), atomically.

    private/ (the key: which clip is real, gold answers) and analysis/ (worker IDs, answers, QC) are left
    out unless include_private: the public zip is what goes to the web host and MTurk; keep key.json to
    analyse the results.
    """
    root = Path(study_dir)
    if not (root / PRIVATE / "key.json").is_file():
        raise ValueError(f"{root} is not a built study (no {PRIVATE}/key.json)")
    out = Path(out_zip)

    def members():
        for p in sorted(root.rglob("*")):
            rel = p.relative_to(root)
            if not p.is_file() or is_bookkeeping(p) or (rel.parts[0] in (PRIVATE, ANALYSIS) and not include_private):
                continue
            if p.resolve() == out.resolve() or (p.name.startswith(f".{out.name}.") and p.parent == out.parent):
                continue                      # the zip itself, and its temporary file while it is written
            if temp_target(p) is not None:    # a half-written file a killed build left behind
                continue
            yield p, rel.as_posix()

    write_zip(out, members())
    return out
