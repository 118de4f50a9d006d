"""What a result says about itself: the protocol card, the summary over runs, the table, the JSON and CSV files.

The card is in every result (results.json `card`, a `card.*` column set in the CSV, lines under the printed
table and in the studio's Evaluate tab): N real/fake, runs, seeds, frames, fps, resolution and resize method
per extractor, audio rate and length per extractor, FAD scale, AudioCLIP's BatchNorm mode and input range,
extractor weights (file name + sha256), the sampler settings of generated sets, and versions.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from mmdiff.atomic import write_text
from mmdiff.csvsafe import write_csv

RESIZE_METHODS = {"crop": "centre crop to a square, then antialiased bicubic (PIL)",
                  "letterbox": "whole frame, aspect kept, black bars, antialiased bicubic (PIL)"}


def versions() -> dict[str, str]:
    import platform
    import subprocess

    import scipy
    import torch

    out = {"mmdiff": mmdiff_version(), "python": platform.python_version(), "numpy": np.__version__,
           "scipy": scipy.__version__, "torch": torch.__version__}
    try:
        out["git_commit"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                           cwd=Path(__file__).parent, timeout=5).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        out["git_commit"] = "unknown"
    return out


def mmdiff_version() -> str:
    """The installed distribution's version, else pyproject.toml's (a source checkout)."""
    import importlib.metadata
    import tomllib

    try:
        return importlib.metadata.version("mmdiff-studio")
    except importlib.metadata.PackageNotFoundError:
        pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
        try:
            return str(tomllib.loads(pyproject.read_text())["project"]["version"])
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "unknown"


def _extractor_card(name: str, identity: dict, cfg) -> dict[str, Any]:
    """Input conventions and weights of one feature, from its identity (what keys its cache)."""
    out: dict[str, Any] = {k: identity[k] for k in ("weights_file", "weights_sha256") if k in identity}
    if name == "i3d":
        out["resolution"] = (f"{cfg.video_size} px ({cfg.video_resize}), then {identity.get('input_size', 224)} px "
                             f"({identity.get('resize', cfg.i3d_resize)})")
        out.update({k: identity[k] for k in ("weights_format", "bn_eps") if k in identity})
    elif identity.get("sample_rate"):
        rate = int(identity["sample_rate"])
        out["audio_rate"] = rate
        if "num_samples" in identity:
            out["audio_length"] = f"{identity['num_samples']} samples ({identity['num_samples'] / rate:g} s)"
        if "input" in identity:
            out["audio_length"] = identity["input"]
    if name == "audioclip":
        out["input_range"] = identity.get("input_range", cfg.audioclip_input)
        out["batchnorm"] = identity.get("batchnorm", cfg.audioclip_batchnorm)
    if name.startswith("av-align"):
        out.update({"function": identity.get("function"), "version": identity.get("version"),
                    "audio_rate": "the clips' own"})
    return out


def protocol_card(cfg, real, fake, extractors: dict[str, dict], real_clip=None, fake_clip=None) -> dict[str, Any]:
    """The card of one result (see the module doc). `real_clip`/`fake_clip`: a clip of each set, for fps/rates."""
    from eval.config import PROTOCOL_DESCRIPTIONS
    from eval.registry import METRICS

    card: dict[str, Any] = {
        "protocol": cfg.protocol, "protocol_description": PROTOCOL_DESCRIPTIONS.get(cfg.protocol, ""),
        "metrics": list(cfg.metrics), "n_real": cfg.num_samples, "n_fake": cfg.num_samples, "runs": cfg.runs,
        "seed": cfg.seed,
        "seeds": ("run r draws real clips with numpy default_rng([seed, r, 0]) and folder fake clips with "
                  "default_rng([seed, r, 1]); generated chunk j is seeded from default_rng([seed, j])"),
        "frames": cfg.frames, "fps": real_clip.fps if real_clip is not None else None,
        "video_size": cfg.video_size or "native", "video_resize": RESIZE_METHODS[cfg.video_resize],
        "audio_rate_real": real_clip.audio_rate if real_clip is not None and real_clip.audio is not None else None,
        "audio_rate_fake": fake_clip.audio_rate if fake_clip is not None and fake_clip.audio is not None else None,
        "extractors": {name: _extractor_card(name, ident, cfg) for name, ident in extractors.items()},
        "fad_scale": {m: METRICS[m].scale for m in cfg.metrics if METRICS[m].frechet},
        "real": real.describe(), "fake": fake.describe(),
    }
    options = getattr(fake, "options", None)
    if options is not None:
        from dataclasses import asdict

        card["sampler"] = {**asdict(options), "checkpoint": fake.ckpt.name,
                           "upscale": fake.upscale.name if fake.upscale else None}
    card["versions"] = versions()
    return card


def card_lines(card: dict[str, Any]) -> list[str]:
    """The card as a few human-readable lines (under the printed table, in the Evaluate tab)."""
    lines = [f"protocol {card['protocol']}: N = {card['n_real']} real / {card['n_fake']} fake, {card['runs']} run(s), "
             f"seed {card['seed']}, {card['frames']} frames at {card['fps'] or '?'} fps, "
             f"video {card['video_size']} px ({card['video_resize'].split(',')[0]})"]
    for name, ex in card["extractors"].items():
        parts = [f"{k} {v}" for k, v in ex.items() if k not in ("weights_sha256", "weights_file") and v is not None]
        if "weights_file" in ex:
            parts.append(f"weights {ex['weights_file']} sha256 {str(ex.get('weights_sha256', ''))[:16]}...")
        lines.append(f"{name}: " + ", ".join(parts))
    scaled = {m: s for m, s in card.get("fad_scale", {}).items() if s != 1.0}
    if scaled:
        lines.append("scaled: " + ", ".join(f"{m} x {s:g} (raw in the JSON)" for m, s in scaled.items()))
    if "sampler" in card:
        s = card["sampler"]
        lines.append("generated: " + ", ".join(f"{k} {v}" for k, v in s.items() if v is not None))
    v = card["versions"]
    lines.append("versions: " + ", ".join(f"{k} {v[k]}" for k in ("mmdiff", "torch", "numpy", "git_commit") if k in v))
    return lines


def summarise(runs: list[dict]) -> dict[str, dict[str, float]]:
    keys = [k for k, v in runs[0].items() if k not in ("run", "seed", "num_samples") and not isinstance(v, list)]
    return {k: {"mean": float(np.mean([r[k] for r in runs])),
                "std": float(np.std([r[k] for r in runs], ddof=1)) if len(runs) > 1 else 0.0} for k in keys}


def table_columns(summary: dict) -> list:
    from eval.registry import METRICS

    return [m for m in METRICS.values() if m.name in summary]


def format_table(results: dict, name: str) -> str:
    """A results table in the layout of the paper's Tables 1-2 (mean +- std over runs), then the card."""
    s = results["summary"]
    cols = table_columns(s)
    head = ["Method"] + [f"{m.title} {'^' if m.higher_is_better else 'v'}" for m in cols]
    rows = [head, [name] + [f"{m.fmt.format(s[m.name]['mean'])} +- {m.fmt.format(s[m.name]['std'])}" for m in cols]]
    if any(e in s for m in cols for e in m.extras):
        rows.append(["(real clips)"] + [next((m.fmt.format(s[e]["mean"]) for e in m.extras if e in s), "")
                                        for m in cols])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    cfg = results["config"]
    scales = [f"{m.title} x {m.scale:g} (raw in the JSON)" for m in cols if m.scale != 1.0]
    lines.append(f"N = {cfg['num_samples']}, {len(results['runs'])} run(s), seed {cfg['seed']}, "
                 f"clips {cfg['frames']} frames at {cfg['video_size'] or 'native'} px; "
                 + "".join(f"{x}; " for x in scales) + "v = lower is better")
    if "card" in results:
        lines += card_lines(results["card"])
    return "\n".join(lines)


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = ";".join(map(str, v)) if isinstance(v, (list, tuple)) else v
    return out


def write_outputs(results: dict, out_json: Path) -> tuple[Path, Path]:
    """results.json and a CSV beside it (one row per run, then mean and std rows; the card in `card.*`
    columns of every row), both atomic."""
    out_json = Path(out_json)
    write_text(out_json, json.dumps(results, indent=2, sort_keys=True, default=str) + "\n")
    keys = [k for k, v in results["runs"][0].items() if k != "run" and not isinstance(v, list)]
    card = {f"card.{k}": v for k, v in flatten(results.get("card", {})).items()}
    header = ["row", *keys, *card]
    rows = [[f"run{r['run']}", *(r[k] for k in keys), *card.values()] for r in results["runs"]]
    rows += [[stat, *(results["summary"][k][stat] if k in results["summary"] else "" for k in keys), *card.values()]
             for stat in ("mean", "std")]
    csv_path = write_csv(out_json.with_suffix(".csv"), header, [dict(zip(header, r)) for r in rows], lineterminator="\n")
    return out_json, csv_path


__all__ = ["card_lines", "format_table", "protocol_card", "summarise", "versions", "write_outputs"]
