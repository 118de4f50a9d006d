"""Sampling speed on the CPU, plain path vs fast path (issue 21), side by side in one process.

    python -m benchmarks.bench_speed                      # shipped tiny model, DPM-Solver++ 20, batch 1/4/16, 2 threads
    python -m benchmarks.bench_speed --threads 1 --steps 5 --repeats 2    # BENCHMARKS.md (loaded machine)
    python -m benchmarks.bench_speed --paper-forward      # also one forward of the paper architecture (smaller clip)
    python -m benchmarks.bench_speed --prompt "a red ball"  # guided: the caption's and the null caption's forward

Three paths run alternately: plain (`MMDIFF_FAST=0`), "serial" (the fast path of mmdiff/nn/fastpath.py with its
batch chunks run one at a time, `fastpath.use_parallel(False)`: the fast path before chunks ran on worker threads)
and fast (the default: chunks on one worker thread per torch thread; with a prompt, a single clip's two guided
forwards on two worker threads). They run alternately,
`--repeats` times each, on the same model, seed and batch; medians are reported, in wall-clock seconds and
in this process's CPU seconds (the second is what a busy machine disturbs least). FLOPs per forward are
counted with torch.utils.flop_counter (convolutions and matrix products, as issue 21 counts them, plus
the attention products, which the counter does not see in CPU flash attention), and set against the
fp32 matmul peak measured in the same process. Prints JSON lines, then a markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks._util import machine


def matmul_peak(n: int = 2048, repeat: int = 5) -> tuple[float, float]:
    """fp32 n x n matmul: (best GFLOP/s by wall clock, best GFLOP/s by process CPU time / threads)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    wall, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        a @ b
        wall.append(time.perf_counter() - t0)
        cpu.append((time.process_time() - c0) / torch.get_num_threads())
    flop = 2 * n ** 3
    return flop / min(wall) / 1e9, flop / min(cpu) / 1e9


def _sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """Q K^T and P V products of one attention call: 2 * 2 * N * heads * Lq * Lk * d."""
    n, h, lq, d = query_shape
    return 4 * n * h * lq * key_shape[-2] * d


def forward_flops(model, batch: int = 1) -> dict:
    """FLOPs of one forward of `batch` clips: {"counted": convs + matmuls, "attention": SDPA products}."""
    cfg = model.config
    g = torch.Generator().manual_seed(0)
    v = torch.randn(batch, *cfg.video_shape, generator=g)
    a = torch.randn(batch, *cfg.audio_shape, generator=g)
    t = torch.full((batch,), 500)
    with torch.inference_mode(), FlopCounterMode(display=False) as plain:
        model(v, a, t)
    sdpa = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    with torch.inference_mode(), FlopCounterMode(display=False, custom_mapping={sdpa: _sdpa_flop}) as full:
        model(v, a, t)
    counted = plain.get_total_flops()
    return {"counted": counted, "attention": full.get_total_flops() - counted}


def _timed(fn) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


# path name -> (fast path on, chunks in parallel)
PATHS = {"plain": (False, False), "serial": (True, False), "fast": (True, True)}


def side_by_side(fn_of_path, repeats: int) -> dict:
    """Run `fn_of_path()` on each of PATHS in turn, rotating the order every round; {path: {"wall": [...], "cpu": [...]}}."""
    from mmdiff.nn import fastpath

    names = list(PATHS)
    out = {name: {"wall": [], "cpu": []} for name in names}
    for i in range(repeats + 1):                    # the first round warms every path up and is dropped
        for name in names[i % len(names):] + names[:i % len(names)]:
            fast, parallel = PATHS[name]
            with fastpath.use(fast), fastpath.use_parallel(parallel):
                wall, cpu = _timed(fn_of_path)
            if i:
                out[name]["wall"].append(wall)
                out[name]["cpu"].append(cpu)
    return out


def bench_sampling(model, batches, steps: int, repeats: int, flops: dict, peak: tuple[float, float],
                   prompt: str | None = None) -> list[dict]:
    """With `prompt`: classifier-free guidance at the studio's default scales, two forwards per step (the
    share of peak then counts both)."""
    from mmdiff.defaults import AUDIO_GUIDANCE_SCALE, GUIDANCE_SCALE
    from mmdiff.generate import SamplerOptions, generate

    opts = SamplerOptions(sampler="dpm-solver++", steps=steps)
    guided = {}
    if prompt:
        from mmdiff.text.encoder import TextEncoder

        guided = {"text": TextEncoder().encode([prompt]), "guidance_scale": GUIDANCE_SCALE,
                  "audio_guidance_scale": AUDIO_GUIDANCE_SCALE}
    forwards = 2 if guided else 1
    rows = []
    for batch in batches:
        times = side_by_side(lambda: generate(model, batch, opts, seed=0, **guided), repeats)
        row = {"bench": "sampling", "batch": batch, "steps": steps, "repeats": repeats, "prompt": prompt,
               "load_avg": os.getloadavg()[0]}
        for name, tt in times.items():
            wall = statistics.median(tt["wall"]) / batch
            cpu = statistics.median(tt["cpu"]) / batch / torch.get_num_threads()
            row[f"{name}_s_per_clip"] = round(wall, 3)
            row[f"{name}_cpu_s_per_clip"] = round(cpu, 3)
            row[f"{name}_clips_per_s"] = round(1 / wall, 3)
            work = (flops["counted"] + flops["attention"]) * steps * forwards / 1e9      # GFLOP per clip
            row[f"{name}_share_of_peak"] = round(work / cpu / peak[1], 3)
        for name in ("serial", "fast"):
            row[f"{name}_speedup_wall"] = round(row["plain_s_per_clip"] / row[f"{name}_s_per_clip"], 2)
            row[f"{name}_speedup_cpu"] = round(row["plain_cpu_s_per_clip"] / row[f"{name}_cpu_s_per_clip"], 2)
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def paper_architecture(size: int = 16):
    """The paper preset's network (channels, heads, windows, dilations) on a smaller clip: size x size video,
    1.6 s of audio at 5,120 Hz (8,192 samples), so one forward takes seconds on a CPU."""
    import mmdiff
    from mmdiff.config import PAPER

    torch.manual_seed(0)
    cfg = PAPER.replace(video_size=size, audio_samples=8192, audio_rate=5120)
    model = mmdiff.build_model(cfg).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    return model


def bench_paper_forward(repeats: int) -> dict:
    model = paper_architecture()
    cfg = model.config
    g = torch.Generator().manual_seed(2)
    v = torch.randn(1, *cfg.video_shape, generator=g)
    a, t = torch.randn(1, *cfg.audio_shape, generator=g), torch.tensor([500])

    def forward():
        with torch.inference_mode():
            torch.manual_seed(3)
            return model(v, a, t)

    times = side_by_side(forward, repeats)
    row = {"bench": "paper_forward", "video_size": cfg.video_size, "audio_samples": cfg.audio_samples,
           "load_avg": os.getloadavg()[0]}
    for name, tt in times.items():
        row[f"{name}_s"] = round(statistics.median(tt["wall"]), 3)
        row[f"{name}_cpu_s"] = round(statistics.median(tt["cpu"]) / torch.get_num_threads(), 3)
    row["speedup_cpu"] = round(row["plain_cpu_s"] / row["fast_cpu_s"], 2)
    print(json.dumps(row), flush=True)
    return row


def table(rows: list[dict], flops: dict, peak: tuple[float, float]) -> str:
    lines = [f"FLOPs per forward (batch 1): {flops['counted'] / 1e9:.2f} G counted (convs + matmuls) "
             f"+ {flops['attention'] / 1e9:.2f} G attention products; fp32 2048^3 matmul peak "
             f"{peak[0]:.1f} GFLOP/s wall, {peak[1]:.1f} GFLOP/s per CPU-second",
             "",
             "| batch | s/clip (wall): plain / serial / fast | clips/s: plain / serial / fast | speed-up over plain "
             "(wall): serial / fast | CPU s/clip: plain / serial / fast | share of peak: plain / serial / fast | load avg |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["bench"] != "sampling":
            continue
        per = lambda key, fmt="{}": " / ".join(fmt.format(r[f"{n}_{key}"]) for n in PATHS)  # noqa: E731
        lines.append(f"| {r['batch']} | {per('s_per_clip')} | {per('clips_per_s')} | "
                     f"{r['serial_speedup_wall']}x / **{r['fast_speedup_wall']}x** | {per('cpu_s_per_clip')} | "
                     f"{per('share_of_peak', '{:.0%}')} | {r['load_avg']:.1f} |")
    for r in rows:
        if r["bench"] == "paper_forward":
            lines.append(f"\nPaper architecture, one forward ({r['video_size']}x{r['video_size']} video, "
                         f"{r['audio_samples']} audio samples): plain {r['plain_cpu_s']} CPU s, fast "
                         f"{r['fast_cpu_s']} CPU s ({r['speedup_cpu']}x); wall {r['plain_s']} / {r['fast_s']} s")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None, help="joint checkpoint (default: the shipped tiny model)")
    ap.add_argument("--batches", default="1,4,16", help="comma-separated batch sizes (default: 1,4,16)")
    ap.add_argument("--steps", type=int, default=20, help="DPM-Solver++ steps (default: 20)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per path and batch (default: 3)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    ap.add_argument("--paper-forward", action="store_true", help="also time one paper-architecture forward")
    ap.add_argument("--prompt", default=None, help="sample with this caption and the studio's guidance (needs a "
                                                   "text-conditioned checkpoint, e.g. the shipped one)")
    args = ap.parse_args(argv)
    try:
        batches = [int(b) for b in args.batches.split(",")]
    except ValueError:
        ap.error(f"--batches must be comma-separated integers, got {args.batches!r}")
    torch.set_num_threads(args.threads)
    from mmdiff.checkpoint import load_model

    model, _ = load_model(args.checkpoint)
    model.eval()
    print(json.dumps({"machine": machine(), "load_avg": os.getloadavg()}), flush=True)
    flops = forward_flops(model)
    peak = matmul_peak()
    print(json.dumps({"flops_per_forward": flops, "matmul_peak_gflops_wall": round(peak[0], 1),
                      "matmul_peak_gflops_cpu": round(peak[1], 1)}), flush=True)
    rows = bench_sampling(model, batches, args.steps, args.repeats, flops, peak, args.prompt)
    if args.paper_forward:
        rows.append(bench_paper_forward(args.repeats))
    print(json.dumps({"load_avg_end": os.getloadavg()}))
    print(table(rows, flops, peak))


if __name__ == "__main__":
    main()
