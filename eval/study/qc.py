"""Quality control of MTurk assignments: gold checks, straight-lining, per-worker caps.

Rules (per task; documented in docs/study.md):
- An assignment is REJECTED when it answers a gold clip wrongly (MOS gold: expected 1 or 2; Turing
  gold: expected "generated"), or when it is straight-lined: at least `min_straight` answers, all the
  same. Rejected assignments give no votes and get a reason in the approve/reject CSV.
- A worker is DROPPED (none of their votes in the task count, their passing assignments are still
  approved) when more than `gold_tolerance` of their gold answers are wrong, or when every one of
  their assignments is straight-lined.
- A worker's assignments beyond `max_hits_per_worker` (in submit order) are approved but not
  counted, so no single worker dominates a system's score.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from .results import Assignment


@dataclass(frozen=True)
class QCConfig:
    gold_tolerance: float = 0.0      # fraction of wrong gold answers a worker may have and be kept
    min_straight: int = 4            # fewest answers in an assignment for the straight-line rule
    max_hits_per_worker: int | None = None   # None: the study's (key.json); 0: no cap

    def validate(self) -> None:
        """ValueError for settings that would silently drop every worker or none."""
        if not 0.0 <= self.gold_tolerance <= 1.0:
            raise ValueError(f"--gold-tolerance is a fraction of gold answers in [0, 1], got {self.gold_tolerance:g}")
        if self.max_hits_per_worker is not None and self.max_hits_per_worker < 0:
            raise ValueError(f"--max-hits-per-worker must be >= 0 (0: no cap), got {self.max_hits_per_worker}")
        if self.min_straight < 2:
            raise ValueError(f"min_straight must be >= 2, got {self.min_straight}")


@dataclass
class Decisions:
    reject: dict[str, str] = field(default_factory=dict)          # assignment id -> reason
    over_cap: set[str] = field(default_factory=set)               # approved, not counted
    dropped_workers: dict[tuple[str, str], str] = field(default_factory=dict)  # (task, worker) -> why
    gold: dict[tuple[str, str], list[int]] = field(default_factory=dict)       # (task, worker) -> [pass, total]

    def counts(self, a: Assignment) -> bool:
        """True when the votes of `a` enter the statistics."""
        return (a.status != "Rejected" and a.assignment_id not in self.reject
                and a.assignment_id not in self.over_cap and (a.task, a.worker_id) not in self.dropped_workers)


def gold_failures(a: Assignment, items: dict) -> tuple[int, list[str]]:
    """(gold answers given, messages for the wrong ones) of one assignment."""
    given, wrong = 0, []
    for v in a.votes:
        gold = items[v.item_id].get("gold")
        if not gold or a.task not in gold:
            continue
        given += 1
        if v.answer not in gold[a.task]:
            wrong.append(f"a check clip that was obviously broken (pure noise) got the answer {v.answer!r}; "
                         f"expected {' or '.join(repr(x) for x in gold[a.task])}")
    return given, wrong


def is_straight(a: Assignment, min_answers: int) -> bool:
    answers = [v.answer for v in a.votes]
    return len(answers) >= min_answers and len(set(answers)) == 1


def _submit_order(a: Assignment) -> tuple:
    return (a.submit_time or datetime.max, str(a.file), a.line)


def decide(assignments: list[Assignment], items: dict, cfg: QCConfig) -> Decisions:
    """Approve/reject, drops and caps for every non-rejected assignment (see module docstring)."""
    d = Decisions()
    by_worker: dict[tuple[str, str], list[Assignment]] = defaultdict(list)
    for a in assignments:
        if a.status == "Rejected":
            continue
        by_worker[(a.task, a.worker_id)].append(a)
        given, wrong = gold_failures(a, items)
        stats = d.gold.setdefault((a.task, a.worker_id), [0, 0])
        stats[0] += given - len(wrong)
        stats[1] += given
        if wrong:
            d.reject[a.assignment_id] = "Failed an attention check: " + wrong[0] + "."
        elif is_straight(a, cfg.min_straight):
            d.reject[a.assignment_id] = "Gave the same answer to every clip in this HIT."
    for key, worker_as in by_worker.items():
        passed, total = d.gold[key]
        if total and (total - passed) / total > cfg.gold_tolerance:
            d.dropped_workers[key] = f"failed {total - passed} of {total} gold checks"
        elif all(is_straight(a, cfg.min_straight) for a in worker_as):
            d.dropped_workers[key] = f"straight-lined all {len(worker_as)} assignment(s)"
        if cfg.max_hits_per_worker:
            ordered = sorted(worker_as, key=_submit_order)
            d.over_cap.update(a.assignment_id for a in ordered[cfg.max_hits_per_worker:])
    return d
