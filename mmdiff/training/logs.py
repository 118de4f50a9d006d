"""Training logs: an append-only CSV of losses and a loss-curve PNG (like Fig. 5 of Paredes' paper)."""
from __future__ import annotations

import csv
import os
from pathlib import Path

# Loss terms the CSV keeps; a term a run does not have stays empty. Terms missing here are dropped.
FIELDS = ["step", "loss", "video", "audio", "contrastive", "lr", "clips_per_s", "elapsed_s"]


class CSVLog:
    """Rows are appended and flushed as they come; on resume, rows past the resumed step are dropped first."""

    def __init__(self, path: str | os.PathLike, resume_step: int | None = None):
        self.path = Path(path)
        if resume_step is not None and self.path.exists():
            rows = [r for r in read_log(self.path) if int(r["step"]) <= resume_step]
            tmp = self.path.with_suffix(".tmp")
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, FIELDS)
                w.writeheader()
                w.writerows(rows)
            os.replace(tmp, self.path)
        elif not self.path.exists() or resume_step is None:
            with open(self.path, "w", newline="") as f:
                csv.DictWriter(f, FIELDS).writeheader()

    def write(self, row: dict) -> None:
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, FIELDS, extrasaction="ignore").writerow(row)


def read_log(path: str | os.PathLike) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def plot_losses(log_path: str | os.PathLike, png_path: str | os.PathLike, smooth: float = 0.9) -> Path | None:
    """Joint, video and audio loss against step (raw, faint, and exponentially smoothed); atomic PNG write."""
    rows = read_log(log_path)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [int(r["step"]) for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for key, color in (("loss", "black"), ("video", "tab:blue"), ("audio", "tab:orange")):
        vals = [float(r[key]) for r in rows if r.get(key) not in ("", None)]
        if len(vals) != len(steps):
            continue
        ema, sm = vals[0], []
        for v in vals:
            ema = smooth * ema + (1 - smooth) * v
            sm.append(ema)
        ax.plot(steps, vals, color=color, alpha=0.2, linewidth=0.8)
        ax.plot(steps, sm, color=color, label={"loss": "joint", "video": "video", "audio": "audio"}[key])
    ax.set_xlabel("step")
    ax.set_ylabel("epsilon MSE")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("training loss")
    fig.tight_layout()
    png_path = Path(png_path)
    tmp = png_path.with_name(f".{png_path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, png_path)
    return png_path
