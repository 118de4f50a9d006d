"""Write the analysis: tables (markdown + CSV) like the paper's Tables 5 and 6, bar charts with
error bars, per-worker CSV, what QC dropped, and the approve/reject CSVs MTurk accepts back.

The approve/reject file is the downloaded results CSV with the `Approve` column set to "x" or the
`Reject` column set to the reason, for Submitted assignments only; upload it on the batch's
"Review results" page ("Upload CSV").
"""
from __future__ import annotations

import io
import math
from pathlib import Path

from mmdiff.atomic import write_bytes, write_text
from mmdiff.mdsafe import md_text

from .files import write_csv_atomic, write_json_atomic
from .qc import Decisions
from .results import LoadedResults
from .tasks import COLUMN_NAMES


def _fmt(x: float, digits: int = 2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def mos_markdown(rows: list[dict], tasks: list[str], confidence: float) -> str:
    head = "| Method | " + " | ".join(f"{COLUMN_NAMES[t]} ↑" for t in tasks) + " |"
    lines = [f"Mean opinion score (1-5, higher is better), mean ± half-width of the {confidence:.0%} "
             "t-interval over votes, (n votes).", "", head, "|---" * (len(tasks) + 1) + "|"]
    for r in rows:
        cells = []
        for t in tasks:
            half = (r[f"{t}_high"] - r[f"{t}_low"]) / 2
            cells.append(f"{_fmt(r[f'{t}_mean'])} ± {_fmt(half)} ({r[f'{t}_n']})")
        lines.append(f"| {md_text(r['label'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def turing_markdown(rows: list[dict], confidence: float) -> str:
    lines = [f"Turing test: % of votes 'real' or 'cannot tell', {confidence:.0%} Wilson interval; "
             "ground truth is the ceiling.", "",
             "| Method | Pass % | Interval | % of ground truth | votes |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {md_text(r['label'])} | {_fmt(100 * r['pass_rate'], 1)} | "
                     f"[{_fmt(100 * r['low'], 1)}, {_fmt(100 * r['high'], 1)}] | "
                     f"{_fmt(100 * r['relative_to_gt'], 1)} | {r['n']} |")
    return "\n".join(lines) + "\n"


def _savefig(fig, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    return write_bytes(path, buf.getvalue())


def _err(mean: float, low: float, high: float) -> tuple[float, float]:
    return (0.0 if math.isnan(low) else mean - low, 0.0 if math.isnan(high) else high - mean)


def mos_chart(rows: list[dict], tasks: list[str], path: Path) -> Path:
    """Grouped bars: one group per task, one bar per system, error bars = confidence interval."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(tasks), 3.2))
    width = 0.8 / max(len(rows), 1)
    for j, r in enumerate(rows):
        xs = [i + (j - (len(rows) - 1) / 2) * width for i in range(len(tasks))]
        means = [r[f"{t}_mean"] for t in tasks]
        errs = list(zip(*[_err(r[f"{t}_mean"], r[f"{t}_low"], r[f"{t}_high"]) for t in tasks]))
        ax.bar(xs, means, width, yerr=errs, capsize=3, label=r["label"])
    ax.set_xticks(range(len(tasks)), [COLUMN_NAMES[t] for t in tasks])
    ax.set_ylim(0, 5.2)
    ax.set_ylabel("MOS (1-5)")
    ax.legend(fontsize=8)
    try:
        return _savefig(fig, path)
    finally:
        plt.close(fig)


def turing_chart(rows: list[dict], path: Path) -> Path:
    """Bars of pass rate per system with Wilson error bars; ground truth drawn as the ceiling line."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.5 + 1.0 * len(rows), 3.2))
    means = [100 * r["pass_rate"] for r in rows]
    errs = list(zip(*[_err(100 * r["pass_rate"], 100 * r["low"], 100 * r["high"]) for r in rows]))
    ax.bar([r["label"] for r in rows], means, yerr=errs, capsize=4, color="tab:blue")
    gt = rows[0]["pass_rate"] if rows and rows[0]["label"] == "Ground truth" else float("nan")
    if not math.isnan(gt):
        ax.axhline(100 * gt, ls="--", color="k", lw=1, label="ground truth (ceiling)")
        ax.legend(fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_ylabel("voted real or cannot tell (%)")
    try:
        return _savefig(fig, path)
    finally:
        plt.close(fig)


def approve_reject_rows(loaded: LoadedResults, decisions: Decisions) -> dict[Path, tuple[list[str], list[dict]]]:
    """Per results file: (header, rows) with Approve = "x" or Reject = reason for Submitted rows
    that were read and have at least one readable answer."""
    out = {}
    readable = {a.assignment_id for a in loaded.assignments if a.votes}
    for rf in loaded.files:
        header = rf.header + [c for c in ("Approve", "Reject") if c not in rf.header]
        rows = []
        for row, aid in zip(rf.rows, rf.assignment_of_row):
            r = {c: row.get(c, "") or "" for c in header}
            # no decision for rows not read (duplicates, malformed) or without one readable answer:
            # those are left for a person to review on the requester site
            if aid in readable and (row.get("AssignmentStatus") or "").strip() == "Submitted":
                reason = decisions.reject.get(aid)
                r["Approve"], r["Reject"] = ("", reason) if reason else ("x", "")
            rows.append(r)
        out[rf.path] = (header, rows)
    return out


def write_outputs(res, loaded: LoadedResults, decisions: Decisions, confidence: float) -> dict[str, Path]:
    """Write every analysis file into `res.out_dir`; returns name -> path."""
    d = res.out_dir
    paths: dict[str, Path] = {}
    md = ["# Study analysis", ""]
    if res.mos is not None:
        tasks = [k[:-5] for k in res.mos[0] if k.endswith("_mean")]
        table = mos_markdown(res.mos, tasks, confidence)
        paths["mos_md"] = write_text(d / "mos_table.md", table)
        paths["mos_csv"] = write_csv_atomic(d / "mos_table.csv", list(res.mos[0]), res.mos)
        paths["mos_png"] = mos_chart(res.mos, tasks, d / "mos.png")
        md += [table]
    if res.turing is not None:
        table = turing_markdown(res.turing, confidence)
        paths["turing_md"] = write_text(d / "turing_table.md", table)
        paths["turing_csv"] = write_csv_atomic(d / "turing_table.csv", list(res.turing[0]), res.turing)
        paths["turing_png"] = turing_chart(res.turing, d / "turing.png")
        md += [table]
    md += ["Inter-rater agreement (Krippendorff's alpha): "
           + ", ".join(f"{t} {_fmt(a, 3)}" for t, a in res.agreement.items()), "",
           "Counts: " + ", ".join(f"{k} {v}" for k, v in res.counts.items()), "",
           f"QC removed {len(res.dropped)} worker(s)/assignment(s) (details in dropped.csv):", "",
           *[f"- {r['what']} {md_text(r['id'])} ({md_text(r['task'])}): {md_text(r['reason'])}"
             for r in res.dropped[:30]],
           *([f"- ... {len(res.dropped) - 30} more"] if len(res.dropped) > 30 else []), "",
           f"{len(res.problems)} input problem(s); see problems.txt."]
    paths["report"] = write_text(d / "report.md", "\n".join(md) + "\n")
    if res.workers:
        paths["workers"] = write_csv_atomic(d / "workers.csv", list(res.workers[0]), res.workers)
    paths["dropped"] = write_csv_atomic(d / "dropped.csv", ["what", "task", "id", "reason"], res.dropped)
    paths["problems"] = write_text(d / "problems.txt", "".join(p + "\n" for p in res.problems))
    for src, (header, rows) in approve_reject_rows(loaded, decisions).items():
        paths[f"approve_reject:{src.name}"] = write_csv_atomic(d / "approve_reject" / src.name, header, rows)
    paths["summary"] = write_json_atomic(d / "summary.json", {
        "mos": res.mos, "turing": res.turing, "agreement": res.agreement, "counts": res.counts,
        "dropped": res.dropped, "problems": len(res.problems)})
    return paths
