"""Core benchmarks (issue: foundation): paper-preset forward time, RS-MMA vs masked full attention, tiny sampling.

    python -m benchmarks.bench_core all            # everything, prints a markdown table for BENCHMARKS.md
    python -m benchmarks.bench_core forward        # paper preset, fp32, batch 1
    python -m benchmarks.bench_core attention      # RS-MMA vs masked full cross-attention, scale-2 shapes
    python -m benchmarks.bench_core tiny           # tiny preset: 1 clip with DPM-Solver++ 20 steps, clips/s by batch
    python -m benchmarks.bench_core sample --preset paper --device cuda   # seconds per generated clip + peak memory
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from benchmarks._util import best_of, cuda_sync, machine, peak_memory_gib, peak_rss_mb, reset_peak_memory, run_isolated


def bench_forward(preset: str = "paper", repeat: int = 3) -> dict:
    import mmdiff

    model = mmdiff.build_model(preset).eval()
    cfg = model.config
    v, a, t = torch.randn(1, *cfg.video_shape), torch.randn(1, *cfg.audio_shape), torch.tensor([500])
    with torch.no_grad():
        sec = best_of(lambda: model(v, a, t), repeat=repeat)
    return {"bench": "forward", "preset": preset, "seconds": round(sec, 3),
            "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 3)}


def attention_inputs(seed: int = 0):
    """Paper scale 2: C = 256, F = 16 frames of 32x32, audio 25,600 / 4 = 6,400 steps, window 1."""
    from mmdiff.nn.attention import RSMMA

    torch.manual_seed(seed)
    block = RSMMA(256, head_dim=64, window=1, frames=16).eval()
    for p in (block.video_out.weight, block.audio_out.weight):
        torch.nn.init.normal_(p, std=0.02)
    return block, torch.randn(1, 256, 16, 32, 32), torch.randn(1, 256, 6400)


def masked_full_attention(block, video, audio, shift: int):
    """Reference: every video token against every audio token, masked to the RS-MMA windows (fused SDPA + bool mask)."""
    b, c, f, h, w = video.shape
    t = audio.shape[-1]
    seg = t // f
    heads = c // block.head_dim
    split = lambda z: z.view(b, -1, heads, block.head_dim).transpose(1, 2)  # noqa: E731
    v_tok = block.video_norm(video).permute(0, 2, 3, 4, 1).reshape(b, f * h * w, c)
    a_tok = block.audio_norm(audio).transpose(1, 2)
    vq, vk, vv = block.video_qkv(v_tok).chunk(3, -1)
    aq, ak, av = block.audio_qkv(a_tok).chunk(3, -1)
    frame_of_v = torch.arange(f * h * w) // (h * w)
    seg_of_a = torch.arange(t) // seg
    v_sees_a = ((seg_of_a[None] - frame_of_v[:, None] - shift) % f) < block.window
    a_sees_v = ((frame_of_v[None] - seg_of_a[:, None] - shift) % f) < block.window
    sdpa = torch.nn.functional.scaled_dot_product_attention
    v_out = sdpa(split(vq), split(ak), split(av), attn_mask=v_sees_a).transpose(1, 2).reshape(b, -1, c)
    a_out = sdpa(split(aq), split(vk), split(vv), attn_mask=a_sees_v).transpose(1, 2).reshape(b, -1, c)
    return (video + block.video_out(v_out).view(b, f, h, w, c).permute(0, 4, 1, 2, 3),
            audio + block.audio_out(a_out).transpose(1, 2))


def bench_attention_one(kind: str) -> dict:
    """Time one attention variant; run in a fresh process so peak RSS belongs to it alone."""
    block, video, audio = attention_inputs()
    base = peak_rss_mb()
    with torch.no_grad():
        fn = (lambda: block(video, audio, shift=3)) if kind == "rsmma" else \
            (lambda: masked_full_attention(block, video, audio, 3))
        sec = best_of(fn, repeat=3)
        out = fn()
    return {"bench": "attention", "kind": kind, "seconds": round(sec, 4),
            "peak_extra_MB": round(peak_rss_mb() - base, 1),
            "checksum": round(float(out[0].double().sum() + out[1].double().sum()), 3)}


def bench_tiny(batches=(1, 2, 4, 8, 16)) -> dict:
    import mmdiff
    from mmdiff.generate import SamplerOptions, generate

    model = mmdiff.build_model("tiny").eval()
    opts = SamplerOptions("dpm-solver++", steps=20)
    one = best_of(lambda: generate(model, 1, opts, seed=0), repeat=3)
    rates = {}
    for b in batches:
        sec = best_of(lambda: generate(model, b, opts, seed=0), repeat=1)
        rates[b] = round(b / sec, 3)
    best = max(rates, key=rates.get)
    return {"bench": "tiny", "one_clip_seconds": round(one, 3), "clips_per_s": rates, "best_batch": best}


def bench_sample(preset: str, device: str, batches=(1, 4, 16)) -> dict:
    """Seconds per generated clip (untrained weights, DPM-Solver++ 20 steps, fp32) by batch, peak GPU memory."""
    import mmdiff
    from mmdiff.device import resolve_device
    from mmdiff.generate import SamplerOptions, generate

    dev = resolve_device(device)
    model = mmdiff.build_model(preset).to(dev).eval()
    opts = SamplerOptions("dpm-solver++", steps=20)

    def run(b: int):
        generate(model, b, opts, seed=0)
        cuda_sync(dev)

    per_clip, peak = {}, {}
    for b in batches:
        reset_peak_memory(dev)
        per_clip[b] = round(best_of(lambda: run(b), repeat=2) / b, 3)
        if dev.type == "cuda":
            peak[b] = peak_memory_gib(dev)
    return {"bench": "sample", "preset": preset, "device": str(dev), "sampler": "dpm-solver++ 20",
            "s_per_clip_by_batch": per_clip, "peak_GiB_by_batch": peak}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("which", choices=["all", "forward", "attention", "tiny", "sample", "_attention_one"],
                   help="benchmark to run")
    p.add_argument("--preset", default="paper", help="model preset of `sample` (default: paper)")
    p.add_argument("--device", default="auto", help="device of `sample`: auto (CUDA when available), cpu, cuda")
    p.add_argument("--kind", default="rsmma", choices=["rsmma", "masked"], help="(internal) attention variant")
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default: 2, this machine)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.which == "_attention_one":
        print(json.dumps(bench_attention_one(args.kind)))
        return
    results = []
    if args.which in ("all", "forward"):
        results.append(bench_forward("paper"))
    if args.which in ("all", "attention"):
        for kind in ("rsmma", "masked"):
            results.append(run_isolated("benchmarks.bench_core", "_attention_one", "--kind", kind,
                                        "--threads", str(args.threads)))
    if args.which in ("all", "tiny"):
        results.append(bench_tiny())
    if args.which == "sample":
        results.append(bench_sample(args.preset, args.device))
    print(f"machine: {machine()}; date: {time.strftime('%Y-%m-%d')}")
    for r in results:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
