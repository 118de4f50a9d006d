"""Parameter count of a preset, broken down by part (the README table).

    python -m benchmarks.param_count [--preset paper]
"""
from __future__ import annotations

import argparse
from collections import Counter

import torch

import mmdiff
from mmdiff.config import resolve_config


def part_of(name: str) -> str:
    if ".cross." in name:
        return "RS-MMA cross-modal attention"
    if ".video_attn." in name:
        return "video self-attention (spatial + temporal)"
    if ".audio_attn." in name:
        return "audio self-attention (middle block)"
    if name.startswith("time_mlp") or ".emb." in name:
        return "timestep embedding + per-block FiLM projections"
    if ".video." in name or name.startswith("video_"):
        return "video residual blocks, stem, head (2D+1D convs)"
    if ".audio." in name or name.startswith("audio_"):
        return "audio residual blocks, stem, head (dilated 1-D convs)"
    return "other"


def breakdown(preset) -> tuple[int, Counter]:
    with torch.device("meta"):
        model = mmdiff.build_model(resolve_config(preset))
    parts: Counter = Counter()
    for name, p in model.named_parameters():
        parts[part_of(name)] += p.numel()
    return sum(parts.values()), parts


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="paper", help="preset name (default: paper)")
    args = ap.parse_args(argv)
    total, parts = breakdown(args.preset)
    print(f"| part ({args.preset}) | parameters |\n|---|---:|")
    for name, n in parts.most_common():
        print(f"| {name} | {n / 1e6:.2f}M |")
    print(f"| **total** | **{total / 1e6:.3f}M** |")


if __name__ == "__main__":
    main()
