"""Training logs: an append-only CSV of losses and a loss-curve PNG (like Fig. 5 of Paredes' paper)."""
from __future__ import annotations

import csv
import os
from pathlib import Path

from mmdiff.atomic import atomic_path
from mmdiff.csvsafe import safe_row

BOOKKEEPING = ("step", "lr", "clips_per_s", "elapsed_s")     # columns that are not loss terms


class CSVLog:
    """Rows are appended and flushed as they come; on resume, rows past the resumed step are dropped first.

    The columns are those of the first row written (step, loss, then each loss term of the objective:
    video/audio for the joint model, mse/vlb for the SR stage; then lr, clips_per_s, elapsed_s); a resumed
    log keeps its header.
    """

    def __init__(self, path: str | os.PathLike, resume_step: int | None = None):
        self.path, self.fields = Path(path), None
        if resume_step is not None and self.path.exists():
            with open(self.path, newline="") as f:
                reader = csv.DictReader(f)
                self.fields = reader.fieldnames
                rows = [r for r in reader if int(r["step"]) <= resume_step]
            with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as f:
                if self.fields:
                    w = csv.DictWriter(f, self.fields)
                    w.writeheader()
                    w.writerows(rows)
        else:
            self.path.write_text("")

    def write(self, row: dict) -> None:
        with open(self.path, "a", newline="") as f:
            if not self.fields:
                self.fields = list(row)
                csv.DictWriter(f, self.fields).writeheader()
            csv.DictWriter(f, self.fields, extrasaction="ignore").writerow(safe_row(row))   # numbers pass unchanged


def read_log(path: str | os.PathLike) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def plot_losses(log_path: str | os.PathLike, png_path: str | os.PathLike, smooth: float = 0.9) -> Path | None:
    """Every loss column against step (raw, faint, and exponentially smoothed); atomic PNG write."""
    rows = read_log(log_path)
    if not rows:
        return None
    from mmdiff.viz import _plt, save_png

    plt = _plt()
    steps = [int(r["step"]) for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    terms = [k for k in rows[0] if k not in BOOKKEEPING and k != "loss"]
    colors = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"]
    for key, color in [("loss", "black"), *zip(terms, colors)]:
        vals = [float(r[key]) for r in rows if r.get(key) not in ("", None)]
        if len(vals) != len(steps):
            continue
        ema, sm = vals[0], []
        for v in vals:
            ema = smooth * ema + (1 - smooth) * v
            sm.append(ema)
        ax.plot(steps, vals, color=color, alpha=0.2, linewidth=0.8)
        ax.plot(steps, sm, color=color, label="total" if key == "loss" else key)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("training loss")
    fig.tight_layout()
    return save_png(fig, png_path)
