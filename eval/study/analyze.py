"""Analyse MTurk results of a study: QC, MOS with t-intervals, Turing pass rates with Wilson
intervals, per-worker statistics, inter-rater agreement (Krippendorff's alpha), tables and charts.

MOS intervals are over individual votes (ITU-T P.800.2 practice, as in the paper's Table 5); the
Turing pass rate is (real + cannot tell) / votes per system (Appendix B), ground truth being the
ceiling a generator can reach. Agreement: alpha with the interval metric for MOS tasks and the
ordinal metric (generated < cannot tell < real) for the Turing test, over non-gold clips.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mmdiff.outdir import claim, contents, named, run_marker

from .key import GOLD, REAL, load_key
from .qc import Decisions, QCConfig, decide
from .results import LoadedResults, load_results
from .stats import krippendorff_alpha, mean_ci, wilson_interval
from .tasks import TASKS, TURING_CHOICES, TURING_PASS

TURING_CODE = {c: i for i, c in enumerate(TURING_CHOICES)}   # generated 0, cannot tell 1, real 2
VOTE_COLUMNS = ["task", "item_id", "system", "worker_id", "answer", "value"]
MOS_STATS = ("mean", "low", "high", "n")


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


def vote_value(task: str, answer: str) -> float:
    """Numeric answer: the 1-5 rating, or the Turing code."""
    return float(TURING_CODE[answer]) if task == "turing" else float(answer)


def used_votes(loaded: LoadedResults, decisions: Decisions, items: dict) -> pd.DataFrame:
    """The votes that enter the statistics (counted assignments, non-gold clips), one row each, in the
    order read: columns VOTE_COLUMNS (`value` is the numeric answer)."""
    rows = [(a.task, v.item_id, items[v.item_id]["system"], a.worker_id, v.answer, vote_value(a.task, v.answer))
            for a in loaded.assignments if decisions.counts(a) for v in a.votes]
    votes = pd.DataFrame(rows, columns=VOTE_COLUMNS).astype({"value": np.float64})
    return votes[votes["system"] != GOLD].reset_index(drop=True)


def _mos_cell(values: pd.Series, confidence: float) -> pd.Series:
    m, lo, hi = mean_ci(values.to_numpy(), confidence)
    return pd.Series([m, lo, hi, len(values)], index=list(MOS_STATS))


def mos_table(votes: pd.DataFrame, tasks: list[str], systems: list[str], confidence: float) -> list[dict]:
    """Table 5: per system and task, mean rating with its t-interval and vote count (n 0, NaN mean: no vote)."""
    cells = (votes.groupby(["system", "task"])["value"].apply(_mos_cell, confidence=confidence).unstack()
             .reindex(columns=list(MOS_STATS), index=pd.MultiIndex.from_product([systems, tasks]))
             .fillna({"n": 0}).astype({"n": int}))                     # (system, task) x stat
    table = cells.unstack()                                            # system x (stat, task)
    table.columns = [f"{t}_{stat}" for stat, t in table.columns]
    table = table.reindex(index=systems, columns=[f"{t}_{stat}" for t in tasks for stat in MOS_STATS])
    table.insert(0, "label", [system_label(s) for s in systems])
    return table.rename_axis("system").reset_index().to_dict("records")


def turing_table(votes: pd.DataFrame, systems: list[str], confidence: float) -> list[dict]:
    """Table 6: per system, share of the Turing votes 'real' or 'cannot tell' with a Wilson interval."""
    votes = votes[votes["task"] == "turing"]
    counts = (votes.assign(passes=votes["answer"].isin(TURING_PASS)).groupby("system")["passes"]
              .agg(["size", "sum"]).reindex(systems, fill_value=0))
    table = pd.DataFrame([wilson_interval(int(k), int(n), confidence) for n, k in counts.to_numpy()],
                         index=systems, columns=["pass_rate", "low", "high"])
    table.insert(0, "label", [system_label(s) for s in systems])
    table["n"], table["passes"] = counts["size"].astype(int), counts["sum"].astype(int)
    gt = table["pass_rate"].iloc[0] if systems and systems[0] == REAL else float("nan")
    table["relative_to_gt"] = table["pass_rate"] / gt if gt and gt == gt else float("nan")
    return table.rename_axis("system").reset_index().to_dict("records")


def agreement(votes: pd.DataFrame) -> dict[str, float]:
    """task -> Krippendorff's alpha over clips (interval for MOS, ordinal for Turing)."""
    return {t: krippendorff_alpha(tv.groupby("item_id", sort=False)["value"].agg(list).tolist(),
                                  "ordinal" if t == "turing" else "interval")
            for t, tv in votes.groupby("task", sort=False)}


def _with_others(votes: pd.DataFrame) -> pd.DataFrame:
    """votes + `others`: the mean answer of the other workers on the same clip (NaN when there is none)."""
    item = votes.groupby(["task", "item_id"])["value"]
    own = votes.groupby(["task", "item_id", "worker_id"])["value"]
    n_others = item.transform("size") - own.transform("size")
    # answers are small integers (ratings 1-5, Turing codes 0-2): these sums are exact, so this equals the
    # mean of the other answers taken one by one
    others = (item.transform("sum") - own.transform("sum")) / n_others.where(n_others > 0)
    return votes.assign(others=others)


def _consensus_r(mine: pd.DataFrame) -> float:
    """Pearson r of a worker's answers against the mean of other workers on the same clips."""
    pairs = mine.dropna(subset=["others"])
    if len(pairs) < 3:
        return float("nan")
    x, y = pairs["value"].to_numpy(), pairs["others"].to_numpy()
    if x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def assignment_frame(loaded: LoadedResults, decisions: Decisions) -> pd.DataFrame:
    """One row per assignment read: task, worker, QC outcome, work time and the share of clips played."""
    def played(a):
        flags = [v.played for v in a.votes if v.played is not None]
        return (sum(flags), len(flags))

    return pd.DataFrame(
        [(a.task, a.worker_id, a.assignment_id in decisions.reject, a.status == "Rejected",
          a.assignment_id in decisions.over_cap, a.work_seconds, *played(a)) for a in loaded.assignments],
        columns=["task", "worker_id", "rejected_by_qc", "already_rejected", "over_cap", "work_seconds",
                 "played", "recorded"]).astype({"work_seconds": np.float64})


def worker_stats(loaded: LoadedResults, decisions: Decisions, votes: pd.DataFrame) -> list[dict]:
    """One row per (task, worker): assignments, decisions, gold, answers, agreement with others."""
    assigns = assignment_frame(loaded, decisions)
    if assigns.empty:
        return []
    table = assigns.groupby(["task", "worker_id"]).agg(
        assignments=("task", "size"), rejected_by_qc=("rejected_by_qc", "sum"),
        already_rejected=("already_rejected", "sum"), over_cap=("over_cap", "sum"),
        played=("played", "sum"), recorded=("recorded", "sum"), median_work_seconds=("work_seconds", "median"))
    keys = list(table.index)
    table["dropped"] = [decisions.dropped_workers.get(k, "") for k in keys]
    table["gold_passed"] = [decisions.gold.get(k, [0, 0])[0] for k in keys]
    table["gold_total"] = [decisions.gold.get(k, [0, 0])[1] for k in keys]
    mine = _with_others(votes).groupby(["task", "worker_id"])
    table["votes_used"] = mine.size().reindex(keys, fill_value=0).astype(int)
    table["mean_answer"] = mine["value"].mean().reindex(keys)
    table["played_fraction"] = table["played"] / table["recorded"].where(table["recorded"] > 0)
    r = {k: _consensus_r(g) for k, g in mine}
    table["r_with_others"] = [r.get(k, float("nan")) for k in keys]
    columns = ["assignments", "rejected_by_qc", "already_rejected", "over_cap", "dropped", "gold_passed",
               "gold_total", "votes_used", "mean_answer", "played_fraction", "median_work_seconds", "r_with_others"]
    return table[columns].reset_index().to_dict("records")


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
        raise ValueError("no usable results file: " + "; ".join(loaded.problems))
    check_results_match(loaded, study_dir)
    decisions = decide(loaded.assignments, key["items"], qc)
    votes = used_votes(loaded, decisions, key["items"])
    systems = system_order(key)
    mos_tasks = [t for t in key["tasks"] if TASKS[t].kind == "mos"]
    res = AnalysisResult(
        out_dir=out,
        mos=mos_table(votes, mos_tasks, systems, confidence) if mos_tasks else None,
        turing=turing_table(votes, systems, confidence) if "turing" in key["tasks"] else None,
        agreement=agreement(votes),
        workers=worker_stats(loaded, decisions, votes),
        dropped=dropped_rows(loaded, decisions),
        problems=loaded.problems,
        counts={**loaded.counts, "assignments": len(loaded.assignments),
                "assignments_counted": sum(decisions.counts(a) for a in loaded.assignments),
                "votes_used": len(votes)},
        paths={},
    )
    # a rerun replaces the earlier analysis as a whole: no table of an older run stays behind
    with claim(res.out_dir, ANALYZE, overwrite=True, ours=_is_analysis, outputs=ANALYSIS_OUTPUTS):
        res.paths = write_outputs(res, loaded, decisions, confidence)
    return res


ANALYZE = "eval.study analyze"
# What an analysis writes (eval.study.report.write_outputs): a rerun replaces these, and refuses a folder that also
# holds anything else (the user's figures or notes beside the tables).
ANALYSIS_OUTPUTS = named(r"(mos|turing)_table\.(md|csv)", r"(mos|turing)\.png", r"report\.md", r"summary\.json",
                         r"(workers|dropped)\.csv", r"problems\.txt", r"approve_reject/[^/]+")


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
