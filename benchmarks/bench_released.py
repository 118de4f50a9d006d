"""The released MM-Diffusion architecture's forward pass: this project against the public code, side by side.

    python -m benchmarks.bench_released --public-repo PATH/TO/MM-Diffusion [--repeat 3] [--threads 2]

Both networks are built in this process at the released configuration (`mm-diffusion`, fp32, batch 1,
16x3x64x64 video, 1x25,600 audio) with the same weights (the public model's random init, converted by
mmdiff.convert), then timed in alternation (public, ours, public, ours, ...) so that load changes hit both
alike. The public code is imported from --public-repo (it needs einops; blobfile and mpi4py, unused by the
model, are stubbed when absent). RS-MMA uses R = 0 in both, and the outputs are compared.
Prints one JSON object: per-run seconds, medians, their ratio, the load average before and after, and what
the arithmetic allows: FLOPs of one forward (torch.utils.flop_counter, plus the attention products it does
not see inside CPU flash attention), the fp32 matmul peak measured in the same process, each implementation's
share of it, and the floor (FLOPs / peak: no fp32 implementation of the same computation runs faster).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import types
from pathlib import Path

import torch

from benchmarks._util import machine
from benchmarks.bench_speed import forward_flops, matmul_peak

RELEASED_ARGS = dict(   # ssh_scripts/multimodal_sample_sr.sh MODEL_FLAGS (fp32 here)
    video_size=[16, 3, 64, 64], audio_size=[1, 25600], num_channels=128, num_res_blocks=2, channel_mult="",
    learn_sigma=False, class_cond=False, use_checkpoint=False, cross_attention_resolutions="2,4,8",
    video_attention_resolutions="2,4,8", audio_attention_resolutions="-1", cross_attention_windows="1,4,8",
    cross_attention_shift=True, num_heads=4, num_head_channels=64, num_heads_upsample=-1,
    use_scale_shift_norm=True, dropout=0.1, use_fp16=False, resblock_updown=True)


def public_model(repo: Path):
    """The public MultimodalUNet at the released configuration, with R = 0 in its RS-MMA."""
    for name in ("blobfile", "mpi4py"):
        try:
            __import__(name)
        except ImportError:
            stub = types.ModuleType(name)
            stub.MPI = None
            sys.modules[name] = stub
    sys.path.insert(0, str(repo))
    from mm_diffusion import multimodal_unet
    from mm_diffusion.multimodal_script_util import create_model

    multimodal_unet.random = types.SimpleNamespace(randint=lambda a, b: a)       # R = 0
    return create_model(**RELEASED_ARGS).eval()


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--public-repo", required=True, type=Path, help="checkout of researchmm/MM-Diffusion")
    ap.add_argument("--repeat", type=int, default=3, help="timed forwards per model (default: 3)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from mmdiff.config import MM_DIFFUSION
    from mmdiff.convert import RELEASES, convert_mm_diffusion
    from mmdiff.nn.unet import CoupledUNet

    torch.manual_seed(0)
    public = public_model(args.public_repo)
    with torch.no_grad():                 # randomise the zero-initialised layers: every path does real work
        for p in public.parameters():
            if not p.abs().sum():
                p.normal_(0, 0.02)
    ckpt = convert_mm_diffusion(public.state_dict(), RELEASES["aist++"].args)
    ours = CoupledUNet(MM_DIFFUSION)
    ours.load_state_dict(ckpt["ema"], strict=True)
    ours.eval()
    gen = torch.Generator().manual_seed(1)
    video = torch.randn(1, 16, 3, 64, 64, generator=gen)
    audio = torch.randn(1, 1, 25_600, generator=gen)
    t = torch.tensor([500])
    runs = {
        "public": lambda: public(video, audio, t),
        "ours": lambda: ours(video, audio, t, shift=0),
    }
    times: dict[str, list[float]] = {"public": [], "ours": []}
    load_before = os.getloadavg()
    with torch.no_grad():
        outs = {name: fn() for name, fn in runs.items()}                       # warm-up, and the outputs
        for _ in range(args.repeat):
            for name, fn in runs.items():                                      # alternate
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    load_after = os.getloadavg()
    diff = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(outs["ours"], outs["public"]))
    med = {k: statistics.median(v) for k, v in times.items()}
    flops = forward_flops(ours)                         # the same computation in both (outputs agree)
    gflop = (flops["counted"] + flops["attention"]) / 1e9
    peak, _ = matmul_peak()                             # GFLOP/s by wall clock, this process's threads
    print(json.dumps({
        "machine": machine(), "config": "mm-diffusion (released), fp32, batch 1",
        "seconds": times, "median_s": med, "ratio_ours_over_public": med["ours"] / med["public"],
        "max_rel_output_difference": diff, "load_average_before": load_before, "load_average_after": load_after,
        "gflop_per_forward": {k: v / 1e9 for k, v in flops.items()}, "matmul_peak_gflop_s": peak,
        "share_of_peak": {k: gflop / v / peak for k, v in med.items()}, "floor_s": gflop / peak,
        "half_of_public_s": med["public"] / 2,
    }, indent=1))


if __name__ == "__main__":
    main()
