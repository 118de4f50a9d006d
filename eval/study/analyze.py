"""Analyse MTurk results of a study: QC, MOS with t-intervals, Turing pass rates with Wilson
intervals, per-worker statistics, inter-rater agreement (Krippendorff's alpha), tables and charts.

MOS intervals are over individual votes (ITU-T P.800.2 practice, as in the paper's Table 5); the
Turing pass rate is (real + cannot tell) / votes per system (Appendix B), ground truth being the
ceiling a generator can reach. Agreement: alpha with the interval metric for MOS tasks and the
ordinal metric (generated < cannot tell < real) for the Turing test, over non-gold clips.
"""
from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmdiff.outdir import claim, contents, run_marker

from .key import GOLD, REAL, load_key
from .qc import Decisions, QCConfig, decide
from .results import LoadedResults, load_results
from .stats import krippendorff_alpha, mean_ci, wilson_interval
from .tasks import TASKS, TURING_CHOICES, TURING_PASS

TURING_CODE = {c: i for i, c in enumerate(TURING_CHOICES)}   # generated 0, cannot tell 1, real 2


@dataclass(frozen=True)
class UsedVote:
    task: str
    item_id: str
    system: str
    worker_id: str
    answer: str

    @property
    def value(self) -> float:
        """Numeric answer: the 1-5 rating, or the Turing code."""
        return float(TURING_CODE[self.answer]) if self.task == "turing" else float(self.answer)


@dataclass
class AnalysisResult:
    out_dir: Path
    mos: list[dict] | None          # one row per system: <task>_mean/_low/_high/_n
    turing: list[dict] | None       # one row per system: pass_rate, low, high, n, passes, relative_to_gt
    agreement: dict[str, float]     # task -> Krippendorff's alpha
    workers: list[dict]
    dropped: list[dict]             # what QC removed and why (workers, assignments)
    problems: list[str]             # messages about malformed input
    counts: dict[str, int]
    paths: dict[str, Path]


def check_results_match(loaded: LoadedResults, study_dir: str | Path) -> None:
    """ValueError when the results hold no vote of this study: a header-only file, or another study's batch."""
    c = loaded.counts
    if c["rows"] == 0:
        names = ", ".join(f.path.name for f in loaded.files)
        raise ValueError(f"the results file(s) hold no rows, only a header ({names})")
    if any(a.votes for a in loaded.assignments) or c["rejected_ignored"] == len(loaded.assignments) > 0:
        return                                       # votes to count, or only assignments already rejected
    if c["unknown_ids"] or c["rows_skipped"] == c["rows"]:
        raise ValueError(f"none of the {c['rows']} result rows belongs to the study in {study_dir} (unknown clip "
                         "ids or tasks): results of another study? --key must be the STUDY_DIR the batch was "
                         "built from")
    raise ValueError(f"no usable vote in {c['rows']} result rows; first problem: "
                     f"{loaded.problems[0] if loaded.problems else 'none recorded'}")


def system_order(key: dict) -> list[str]:
    return [REAL, *key["config"]["systems"]]


def system_label(system: str) -> str:
    return "Ground truth" if system == REAL else system


def used_votes(loaded: LoadedResults, decisions: Decisions, items: dict) -> dict[str, list[UsedVote]]:
    """task -> votes that enter the statistics (counted assignments, non-gold clips)."""
    out: dict[str, list[UsedVote]] = defaultdict(list)
    for a in loaded.assignments:
        if not decisions.counts(a):
            continue
        for v in a.votes:
            system = items[v.item_id]["system"]
            if system != GOLD:
                out[a.task].append(UsedVote(a.task, v.item_id, system, a.worker_id, v.answer))
    return out


def mos_table(votes: dict[str, list[UsedVote]], tasks: list[str], systems: list[str],
              confidence: float) -> list[dict]:
    """Table 5: per system and task, mean rating with its t-interval and vote count."""
    rows = []
    for s in systems:
        row = {"system": s, "label": system_label(s)}
        for t in tasks:
            vals = [v.value for v in votes.get(t, []) if v.system == s]
            m, lo, hi = mean_ci(vals, confidence)
            row.update({f"{t}_mean": m, f"{t}_low": lo, f"{t}_high": hi, f"{t}_n": len(vals)})
        rows.append(row)
    return rows


def turing_table(votes: list[UsedVote], systems: list[str], confidence: float) -> list[dict]:
    """Table 6: per system, share of votes 'real' or 'cannot tell' with a Wilson interval."""
    rows = []
    for s in systems:
        mine = [v for v in votes if v.system == s]
        passes = sum(v.answer in TURING_PASS for v in mine)
        p, lo, hi = wilson_interval(passes, len(mine), confidence)
        rows.append({"system": s, "label": system_label(s), "pass_rate": p, "low": lo, "high": hi,
                     "n": len(mine), "passes": passes})
    gt = rows[0]["pass_rate"] if rows and rows[0]["system"] == REAL else float("nan")
    for r in rows:
        r["relative_to_gt"] = r["pass_rate"] / gt if gt and gt == gt else float("nan")
    return rows


def agreement(votes: dict[str, list[UsedVote]]) -> dict[str, float]:
    """task -> Krippendorff's alpha over clips (interval for MOS, ordinal for Turing)."""
    out = {}
    for t, vs in votes.items():
        units: dict[str, list[float]] = defaultdict(list)
        for v in vs:
            units[v.item_id].append(v.value)
        out[t] = krippendorff_alpha(list(units.values()), "ordinal" if t == "turing" else "interval")
    return out


def _consensus_r(worker: str, mine: list[UsedVote], by_item: dict[str, list[UsedVote]]) -> float:
    """Pearson r of a worker's answers against the mean of other workers on the same clips."""
    pairs = []
    for v in mine:
        others = [o.value for o in by_item[v.item_id] if o.worker_id != worker]
        if others:
            pairs.append((v.value, float(np.mean(others))))
    if len(pairs) < 3:
        return float("nan")
    x, y = np.array(pairs).T
    if x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def worker_stats(loaded: LoadedResults, decisions: Decisions, votes: dict[str, list[UsedVote]]) -> list[dict]:
    """One row per (task, worker): assignments, decisions, gold, answers, agreement with others."""
    rows = []
    groups = defaultdict(list)
    for a in loaded.assignments:
        groups[(a.task, a.worker_id)].append(a)
    by_item: dict[str, dict[str, list[UsedVote]]] = defaultdict(lambda: defaultdict(list))  # task -> item
    by_worker: dict[tuple[str, str], list[UsedVote]] = defaultdict(list)
    for task, vs in votes.items():
        for v in vs:
            by_item[task][v.item_id].append(v)
            by_worker[(task, v.worker_id)].append(v)
    for (task, worker), assigns in sorted(groups.items()):
        mine = by_worker.get((task, worker), [])
        played = [v.played for a in assigns for v in a.votes if v.played is not None]
        times = [a.work_seconds for a in assigns if a.work_seconds is not None]
        gold_pass, gold_total = decisions.gold.get((task, worker), [0, 0])
        rows.append({
            "task": task, "worker_id": worker, "assignments": len(assigns),
            "rejected_by_qc": sum(a.assignment_id in decisions.reject for a in assigns),
            "already_rejected": sum(a.status == "Rejected" for a in assigns),
            "over_cap": sum(a.assignment_id in decisions.over_cap for a in assigns),
            "dropped": decisions.dropped_workers.get((task, worker), ""),
            "gold_passed": gold_pass, "gold_total": gold_total,
            "votes_used": len(mine),
            "mean_answer": float(np.mean([v.value for v in mine])) if mine else float("nan"),
            "played_fraction": float(np.mean(played)) if played else float("nan"),
            "median_work_seconds": float(np.median(times)) if times else float("nan"),
            "r_with_others": _consensus_r(worker, mine, by_item[task]),
        })
    return rows


def dropped_rows(loaded: LoadedResults, decisions: Decisions) -> list[dict]:
    rows = [{"what": "worker", "task": t, "id": w, "reason": why}
            for (t, w), why in sorted(decisions.dropped_workers.items())]
    for a in loaded.assignments:
        if a.assignment_id in decisions.reject:
            rows.append({"what": "assignment", "task": a.task, "id": a.assignment_id,
                         "reason": f"rejected (worker {a.worker_id}): {decisions.reject[a.assignment_id]}"})
        elif a.assignment_id in decisions.over_cap:
            rows.append({"what": "assignment", "task": a.task, "id": a.assignment_id,
                         "reason": f"over the per-worker limit (worker {a.worker_id}); approved, not counted"})
        elif a.status == "Rejected":
            rows.append({"what": "assignment", "task": a.task, "id": a.assignment_id,
                         "reason": "already Rejected on MTurk; ignored"})
        elif not a.votes:
            rows.append({"what": "assignment", "task": a.task, "id": a.assignment_id,
                         "reason": f"no readable answer (worker {a.worker_id}); no approve/reject decision "
                                   "written, review it by hand"})
    return rows


def analyze_results(results: list[str | Path], study_dir: str | Path, out_dir: str | Path | None = None,
                    qc: QCConfig | None = None, confidence: float = 0.95) -> AnalysisResult:
    """Read results CSVs against the study key, apply QC, compute and write every table and chart.

    Writes into `out_dir` (default STUDY_DIR/analysis): report.md, mos_table.{md,csv} or
    turing_table.{md,csv}, mos.png / turing.png, workers.csv, dropped.csv, problems.txt,
    approve_reject/<results file name>, summary.json.
    """
    from .report import write_outputs

    if not 0.0 < confidence < 1.0:          # also refuses NaN
        raise ValueError(f"--confidence is a level in (0, 1) such as 0.95, got {confidence:g}")
    qc = qc or QCConfig()
    qc.validate()
    key = load_key(study_dir)
    out = _output_dir(Path(out_dir) if out_dir else Path(study_dir) / "analysis")
    if not results:
        raise ValueError("no results CSV given (--results Batch_*_batch_results.csv)")
    if qc.max_hits_per_worker is None:
        qc = dataclasses.replace(qc, max_hits_per_worker=key["config"].get("max_hits_per_worker", 0))
    loaded = load_results([Path(p) for p in results], key)
    if not loaded.files:
        raise ValueError("no usable results file:\n" + "\n".join(loaded.problems))
    check_results_match(loaded, study_dir)
    decisions = decide(loaded.assignments, key["items"], qc)
    votes = used_votes(loaded, decisions, key["items"])
    systems = system_order(key)
    mos_tasks = [t for t in key["tasks"] if TASKS[t].kind == "mos"]
    res = AnalysisResult(
        out_dir=out,
        mos=mos_table(votes, mos_tasks, systems, confidence) if mos_tasks else None,
        turing=turing_table(votes.get("turing", []), systems, confidence) if "turing" in key["tasks"] else None,
        agreement=agreement(votes),
        workers=worker_stats(loaded, decisions, votes),
        dropped=dropped_rows(loaded, decisions),
        problems=loaded.problems,
        counts={**loaded.counts, "assignments": len(loaded.assignments),
                "assignments_counted": sum(decisions.counts(a) for a in loaded.assignments),
                "votes_used": sum(len(v) for v in votes.values())},
        paths={},
    )
    # a rerun replaces the earlier analysis as a whole: no table of an older run stays behind
    with claim(res.out_dir, ANALYZE, overwrite=True, ours=_is_analysis):
        res.paths = write_outputs(res, loaded, decisions, confidence)
    return res


ANALYZE = "eval.study analyze"


def _is_analysis(folder: Path) -> bool:
    return (folder / "summary.json").is_file() and (folder / "report.md").is_file()


def _output_dir(out: Path) -> Path:
    """`out`, checked before any work: new, empty, or an earlier analysis (which is replaced)."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    if out.is_dir() and contents(out) and (run_marker(out) or {}).get("kind") != ANALYZE and not _is_analysis(out):
        raise ValueError(f"--out {out} holds other files ({', '.join(p.name for p in contents(out)[:3])}); "
                         "give a new or empty folder, or an earlier analysis folder to replace")
    return out
