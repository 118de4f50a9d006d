"""Tiny synthetic clips for the user-study tests (8 frames 32x32, 0.8 s audio), written with PyAV."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

CONTAINER_CODECS = {  # suffix -> (video codec, audio codec)
    ".mp4": ("libx264", "aac"),
    ".avi": ("mpeg4", "pcm_s16le"),
    ".mkv": ("mpeg4", "aac"),
}


def write_clip(path: Path, seed: int = 0, audio: bool = True, frames: int = 8, size: int = 32,
               fps: int = 10, seconds: float = 0.8, rate: int = 16000) -> Path:
    """Write a clip: video (frames, size, size, 3) uint8 of a moving gradient, audio a sine tone."""
    vcodec, acodec = CONTAINER_CODECS[path.suffix]
    rng = np.random.default_rng(seed)
    with av.open(str(path), "w") as c:
        v = c.add_stream(vcodec, rate=fps)
        v.width = v.height = size
        v.pix_fmt = "yuv420p"
        a = None
        if audio:
            a = c.add_stream(acodec, rate=rate)
            a.layout = "mono"
        base = rng.integers(0, 255, size=(size, size, 3), dtype=np.uint8)
        for i in range(frames):
            img = np.roll(base, i, axis=1)  # (H, W, 3)
            for pkt in v.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
        for pkt in v.encode():
            c.mux(pkt)
        if a is not None:
            t = np.arange(int(seconds * rate)) / rate
            wave = (0.3 * np.sin(2 * np.pi * (220 + 50 * seed) * t) * 32767).astype(np.int16)
            frame_size = 1024
            for start in range(0, wave.size, frame_size):
                chunk = wave[start:start + frame_size][None, :]  # (1, n) packed s16 mono
                fr = av.AudioFrame.from_ndarray(chunk, format="s16", layout="mono")
                fr.sample_rate = rate
                fr.pts = start
                fr.time_base = Fraction(1, rate)
                for pkt in a.encode(fr):
                    c.mux(pkt)
            for pkt in a.encode():
                c.mux(pkt)
    return path


def make_clips_dir(root: Path, name: str, n: int, suffix: str = ".mp4", seed0: int = 0) -> Path:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        write_clip(d / f"clip{i:03d}{suffix}", seed=seed0 + i)
    return d


# The columns of an MTurk batch results CSV before Input.* (REFERENCE.md section 4).
RESULTS_META = ["HITId", "HITTypeId", "Title", "Description", "Keywords", "Reward", "CreationTime",
                "MaxAssignments", "RequesterAnnotation", "AssignmentDurationInSeconds",
                "AutoApprovalDelayInSeconds", "Expiration", "NumberOfSimilarHITs", "LifetimeInSeconds",
                "AssignmentId", "WorkerId", "AssignmentStatus", "AcceptTime", "SubmitTime",
                "AutoApprovalTime", "ApprovalTime", "RejectionTime", "RequesterFeedback",
                "WorkTimeInSeconds", "LifetimeApprovalRate", "Last30DaysApprovalRate", "Last7DaysApprovalRate"]


def results_rows(batch_header, batch_rows, answers, field, encoding, status="Submitted", start=0):
    """MTurk results rows: one per (hit index, worker, {slot: answer}) in `answers`.

    encoding "fields": Answer.<field>_<i> columns; "radio": Answer.<field>_<i>.<choice> = true/false
    columns (crowd-form radio groups, flattened); "json": one Answer.taskAnswers column.
    Returns (header, rows).
    """
    import json

    slots = sorted(int(c.rsplit("_", 1)[1]) for c in batch_header if c.startswith("item_id_"))
    choices = ("1", "2", "3", "4", "5") if field == "rating" else ("generated", "cannot_tell", "real")
    if encoding == "fields":
        answer_cols = [f"Answer.{field}_{i}" for i in slots] + [f"Answer.item_id_{i}" for i in slots]
    elif encoding == "radio":
        answer_cols = [f"Answer.{field}_{i}.{c}" for i in slots for c in choices]
    else:
        answer_cols = ["Answer.taskAnswers"]
    header = RESULTS_META + [f"Input.{c}" for c in batch_header] + answer_cols + ["Approve", "Reject"]
    rows = []
    for n, (hit, worker, ans) in enumerate(answers, start):
        r = dict.fromkeys(header, "")
        r.update({"HITId": f"HIT{hit:04d}", "HITTypeId": "TYPE1", "Title": "t", "Reward": "$0.20",
                  "MaxAssignments": "5", "AssignmentId": f"A{n:05d}", "WorkerId": worker,
                  "AssignmentStatus": status, "AcceptTime": "Mon Nov 20 10:00:00 PST 2026",
                  "SubmitTime": f"Mon Nov 20 10:{n // 60 % 60:02d}:{n % 60:02d} PST 2026",
                  "WorkTimeInSeconds": "95", "LifetimeApprovalRate": "100% (10/10)"})
        r.update({f"Input.{c}": v for c, v in batch_rows[hit].items()})
        given = {f"{field}_{i}": a for i, a in ans.items()}
        if encoding == "fields":
            r.update({f"Answer.{k}": v for k, v in given.items()})
            r.update({f"Answer.item_id_{i}": batch_rows[hit][f"item_id_{i}"] for i in slots})
        elif encoding == "radio":
            r.update({f"Answer.{field}_{i}.{c}": str(ans.get(i) == c).lower() for i in slots for c in choices})
        else:
            r["Answer.taskAnswers"] = json.dumps([{**given, **{f"played_{i}": "1" for i in slots}}])
        rows.append(r)
    return header, rows


def write_csv(path, header, rows, bom=False):
    import csv

    with open(path, "w", newline="", encoding="utf-8-sig" if bom else "utf-8") as f:
        w = csv.DictWriter(f, fieldnames=header)
        w.writeheader()
        w.writerows(rows)
    return path


def read_batch_csv(path):
    """(header, rows) of a batch input CSV written by build."""
    import csv

    with open(path, newline="", encoding="utf-8") as f:
        r = csv.DictReader(f)
        return r.fieldnames, list(r)
