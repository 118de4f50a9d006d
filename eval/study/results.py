"""Read MTurk batch results CSVs (Batch_*_batch_results.csv) into votes, keeping every valid row.

Columns used (REFERENCE.md section 4): AssignmentId, WorkerId, HITId, AssignmentStatus, SubmitTime,
WorkTimeInSeconds, `Input.study_task`, `Input.item_id_<i>`, and the answers in either encoding:
per-field `Answer.<name>` columns (`Answer.rating_3` = "4", or radio groups flattened as
`Answer.rating_3.4` = "true"), or one JSON column `Answer.taskAnswers` (`[{"rating_3": "4", ...}]`,
values may also be `{"4": true}` or `{"label": "4"}`). Problems (missing columns, duplicate
assignments, unknown ids, empty or invalid answers) become messages; the rest of the row and file
is still read.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .tasks import TASKS, Task

REQUIRED = ("AssignmentId", "WorkerId", "HITId", "AssignmentStatus")
TASK_ANSWERS = "Answer.taskAnswers"


@dataclass(frozen=True)
class Vote:
    slot: int                 # 1-based position in the HIT
    item_id: str
    answer: str
    played: bool | None       # worker played the clip to the end (None: not recorded)


@dataclass
class Assignment:
    assignment_id: str
    worker_id: str
    hit_id: str
    status: str               # Submitted / Approved / Rejected
    task: str
    submit_time: datetime | None
    work_seconds: float | None
    file: Path
    line: int
    votes: list[Vote] = field(default_factory=list)


@dataclass
class ResultsFile:
    path: Path
    header: list[str]
    rows: list[dict[str, str]]
    assignment_of_row: list[str | None]   # AssignmentId for rows that were read, None otherwise


@dataclass
class LoadedResults:
    assignments: list[Assignment]
    files: list[ResultsFile]
    problems: list[str]
    counts: dict[str, int]


def parse_mturk_time(text: str) -> datetime | None:
    """MTurk's 'Mon Nov 20 10:04:05 PST 2026' (the zone name is dropped) or ISO 8601; None if neither."""
    parts = (text or "").split()
    if len(parts) == 6:
        try:
            return datetime.strptime(" ".join(parts[:4] + parts[5:]), "%a %b %d %H:%M:%S %Y")
        except ValueError:
            pass
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        return None


def _json_value(v: object) -> str:
    """One answer from the taskAnswers JSON: a scalar, {"label": x} or {choice: true}."""
    if isinstance(v, dict):
        if "label" in v:
            return str(v["label"])
        chosen = [k for k, on in v.items() if on is True or str(on).lower() == "true"]
        return chosen[0] if len(chosen) == 1 else ""
    return "" if v is None else str(v)


def parse_answers(row: dict[str, str]) -> dict[str, str]:
    """Form field -> answer string, from per-field Answer.* columns, then Answer.taskAnswers JSON.

    ValueError when the taskAnswers JSON cannot be parsed (the per-field answers are lost too only if
    the caller gives up; `read_results_file` keeps them).
    """
    answers: dict[str, str] = {}
    for col, val in row.items():
        if not col or not col.startswith("Answer.") or col == TASK_ANSWERS:
            continue
        name = col[len("Answer."):]
        base, dot, choice = name.rpartition(".")
        if dot and choice == "label":                       # crowd element flattened as <name>.label
            answers[base] = (val or "").strip()
        elif dot and (val or "").strip().lower() in ("true", "false"):
            if val.strip().lower() == "true":
                answers[base] = choice
        else:
            answers[name] = (val or "").strip()
    raw = (row.get(TASK_ANSWERS) or "").strip()
    if raw:
        data = json.loads(raw)
        if isinstance(data, list):
            data = data[0] if data else {}
        if not isinstance(data, dict):
            raise ValueError(f"{TASK_ANSWERS} is not a JSON object or list of objects")
        for k, v in data.items():
            if not answers.get(k):
                answers[k] = _json_value(v).strip()
    return answers


def _slots(header: list[str]) -> list[int]:
    out = []
    for c in header:
        if c.startswith("Input.item_id_") and c[len("Input.item_id_"):].isdigit():
            out.append(int(c[len("Input.item_id_"):]))
    return sorted(out)


def _row_task(row: dict[str, str], slots: list[int], layouts: dict[frozenset, str]) -> str | None:
    """The task of a row: Input.study_task, else the key's HIT layout holding exactly these ids."""
    t = (row.get("Input.study_task") or "").strip()
    if t:
        return t
    ids = frozenset((row.get(f"Input.item_id_{i}") or "").strip() for i in slots)
    return layouts.get(ids)


def _row_votes(row: dict[str, str], task: Task, slots: list[int], known: set[str], where: str,
               problems: list[str], counts: dict[str, int]) -> list[Vote]:
    try:
        answers = parse_answers(row)
    except (ValueError, json.JSONDecodeError) as e:
        problems.append(f"{where}: {TASK_ANSWERS} unreadable ({e}); using per-field answers only")
        counts["bad_json"] += 1
        answers = parse_answers({k: v for k, v in row.items() if k != TASK_ANSWERS})
    votes = []
    for i in slots:
        item = (row.get(f"Input.item_id_{i}") or "").strip()
        ans = answers.get(f"{task.field}_{i}", "")
        if item not in known:
            problems.append(f"{where}: slot {i} has unknown item id {item!r} (not in the study key); vote skipped")
            counts["unknown_ids"] += 1
        elif not ans:
            problems.append(f"{where}: answer {task.field}_{i} is empty; vote skipped")
            counts["empty_answers"] += 1
        elif ans not in task.choices:
            problems.append(f"{where}: answer {task.field}_{i}={ans!r} is not one of {list(task.choices)}; "
                            "vote skipped")
            counts["invalid_answers"] += 1
        else:
            played = answers.get(f"played_{i}")
            votes.append(Vote(i, item, ans, None if played in (None, "") else played == "1"))
    return votes


def _float(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


def read_results_file(path: Path, known: set[str], tasks: set[str], layouts: dict[frozenset, str],
                      seen: dict[str, Assignment], problems: list[str], counts: dict[str, int]
                      ) -> ResultsFile | None:
    """Read one results CSV; new assignments are added to `seen`. None when the file is unusable."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = list(reader.fieldnames or [])
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        problems.append(f"{path}: cannot be read as CSV ({e}); file skipped")
        return None
    missing = [c for c in REQUIRED if c not in header]
    slots = _slots(header)
    if missing or not slots:
        what = ", ".join(missing + ([] if slots else ["Input.item_id_<i>"]))
        problems.append(f"{path}: missing column(s) {what}; is this a batch results CSV of this study? file skipped")
        counts["files_skipped"] += 1
        return None
    rf = ResultsFile(path, header, rows, [None] * len(rows))
    for n, row in enumerate(rows):
        line = n + 2
        aid = (row.get("AssignmentId") or "").strip()
        where = f"{path.name} line {line} (assignment {aid or '?'})"
        counts["rows"] += 1
        if not aid or not (row.get("WorkerId") or "").strip():
            problems.append(f"{where}: empty AssignmentId or WorkerId; row skipped")
            counts["rows_skipped"] += 1
            continue
        if aid in seen:
            prev = seen[aid]
            problems.append(f"{where}: duplicate of {prev.file.name} line {prev.line}; first one kept")
            counts["duplicates"] += 1
            continue
        status = (row.get("AssignmentStatus") or "").strip()
        task_name = _row_task(row, slots, layouts)
        if task_name not in tasks:
            problems.append(f"{where}: task {task_name!r} is not a task of this study {sorted(tasks)}; row skipped")
            counts["rows_skipped"] += 1
            continue
        a = Assignment(aid, row["WorkerId"].strip(), row["HITId"].strip(), status, task_name,
                       parse_mturk_time(row.get("SubmitTime", "")), _float(row.get("WorkTimeInSeconds")),
                       path, line)
        seen[aid] = a
        rf.assignment_of_row[n] = aid
        if status == "Rejected":
            counts["rejected_ignored"] += 1
            continue
        a.votes = _row_votes(row, TASKS[task_name], slots, known, where, problems, counts)
    return rf


def load_results(paths: list[Path], key: dict) -> LoadedResults:
    """Read every results CSV against the study key (`private/key.json` content)."""
    counts = dict.fromkeys(["rows", "rows_skipped", "files_skipped", "duplicates", "rejected_ignored",
                            "unknown_ids", "empty_answers", "invalid_answers", "bad_json"], 0)
    problems: list[str] = []
    seen: dict[str, Assignment] = {}
    layouts = {frozenset(ids): t for t, hits in key["hits"].items() for ids in hits}
    files = []
    for p in paths:
        rf = read_results_file(Path(p), set(key["items"]), set(key["tasks"]), layouts, seen, problems, counts)
        if rf is not None:
            files.append(rf)
    return LoadedResults(list(seen.values()), files, problems, counts)
