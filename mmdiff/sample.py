"""Sample clips from a checkpoint: mp4 (H.264 + AAC) and wav per sample, plus a manifest.

    python -m mmdiff.sample --num 8 --out samples/                       # the shipped default model
    python -m mmdiff.sample --ckpt RUN/last.pt --num 64 --out DIR --sampler ddim --steps 50 --seed 1
    python -m mmdiff.sample --condition-video clip.mp4 --guidance gradient --scale 1 --num 4 --out DIR
    torchrun --nproc_per_node 4 -m mmdiff.sample --ckpt ... --num 2048 --out DIR   # shards the N samples
    python -m mmdiff.sample --num 4 --out DIR --upscale SR.pt     # second stage: super-resolve the frames
    python -m mmdiff.sample --ckpt TEXT.pt --prompt "a red ball bounces twice" --guidance-scale 3 --out DIR
    python -m mmdiff.sample --ckpt TEXT.pt --prompt "..." --two-step --out DIR   # text -> video -> audio

Sample i always comes from batch i // batch-size seeded with seed + that batch number, so the same
(seed, batch size) gives the same clips whatever the number of processes.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from mmdiff.atomic import file_sha256, write_text
from mmdiff.cliargs import fail, non_negative_float, positive_int, seed_int
from mmdiff.checkpoint import default_checkpoint, load_model
from mmdiff.defaults import AUDIO_GUIDANCE_SCALE, DEFAULT_SR_CHECKPOINT, GUIDANCE_SCALE
from mmdiff.data.pixels import model_to_frames
from mmdiff.diffusion.guidance import DEFAULT_GRADIENT_SCALE, GUIDANCE_MODES, Condition
from mmdiff.diffusion.samplers import SAMPLERS
from mmdiff.generate import (SHIFT_MODES, SamplerOptions, encode_prompt, generate, generate_two_step,
                             trained_for_conditioning, two_step_mode)
from mmdiff.outdir import OutputDirError, claim_for_rank, named


def load_condition(path: str, modality: str, model_config, start: float = 0.0) -> torch.Tensor:
    """Decode a conditioning file into the model's layout: video (1, F, 3, H, W) or audio (1, 1, T) in [-1, 1],
    from `start` s. Notices (damaged packets skipped, short audio padded) go to stderr.

    Only the given stream is read (a silent video can condition audio; wav/flac/mp3 or a video with
    sound can condition video); errors (mmdiff.uploads.UploadError, a ValueError) name the file.
    """
    from mmdiff.uploads import UploadLimits, condition_audio, condition_tensor, condition_video

    limits = UploadLimits(max_bytes=2**40, max_seconds=float("inf"))      # the CLI trusts its own files
    decode = condition_video if modality == "video" else condition_audio  # (F, H, W, 3) uint8 | (T,) float32
    notices: list[str] = []
    value = decode(path, model_config, limits, start=start, notices=notices)
    for line in notices:
        print(f"note: {line}", file=sys.stderr)
    return condition_tensor(modality, value)


def batch_plan(num: int, batch_size: int, rank: int = 0, world: int = 1) -> list[tuple[int, int, int]]:
    """(batch number, first sample, count) of the batches this rank generates."""
    batches = [(b, b * batch_size, min(batch_size, num - b * batch_size)) for b in range((num + batch_size - 1) // batch_size)]
    return batches[rank::world]


@dataclass(frozen=True)
class UpscaleOptions:
    """The second (super-resolution) stage: checkpoint and sampler (Table A.1: DDIM, 25 steps)."""

    ckpt: str
    sampler: str = "ddim"
    steps: int = 25
    noise: str = "shared"
    batch_frames: int = 16
    spacing: str = "linspace"     # DDIM levels; "stride": the public code's ddim25 respacing (mmdiff.upscale)


def load_upscaler(opts: UpscaleOptions | None, joint_config, device):
    """(video (B, F, 3, h, w) -> (B, F, 3, H, W)) function, or None without `opts`; checks the sizes match."""
    if opts is None:
        return None
    from mmdiff.checkpoint import load_sr_model
    from mmdiff.upscale import upscale

    sr, sr_schedule = load_sr_model(opts.ckpt, device)
    if sr.config.low_size != joint_config.video_size:
        raise ValueError(f"{opts.ckpt} upscales {sr.config.low_size}x{sr.config.low_size} frames but the joint "
                         f"model makes {joint_config.video_size}x{joint_config.video_size}")
    sampler = SamplerOptions(opts.sampler, steps=opts.steps)
    return lambda video, seed: upscale(sr, video, sampler, seed=seed, noise=opts.noise,
                                       batch_frames=opts.batch_frames, schedule=sr_schedule, spacing=opts.spacing)


def generate_clips(ckpt: str | None, num: int, seed: int = 0, batch_size: int = 8, device: str = "auto",
                   sampler: str = "dpm-solver++", steps: int = 20, rank: int = 0, world: int = 1,
                   upscale: UpscaleOptions | None = None, options: SamplerOptions | None = None
                   ) -> Iterator[tuple[np.ndarray, np.ndarray, int]]:
    """Yield (video uint8 (B, F, H, W, 3), audio float32 (B, T) in [-1, 1], audio_rate) batches.

    The evaluation package calls this; `ckpt=None` uses the shipped default model; with `upscale` the
    frames go through the super-resolution stage. `options` (all sampler settings) wins over `sampler`/`steps`.
    """
    from mmdiff.device import resolve_device

    dev = resolve_device(device)
    model, schedule = load_model(ckpt, dev)
    upscaler = load_upscaler(upscale, model.config, dev)
    opts = options if options is not None else SamplerOptions(sampler, steps=steps)
    for b, _, count in batch_plan(num, batch_size, rank, world):
        video, audio = generate(model, count, opts, seed=seed + b, schedule=schedule)
        if upscaler is not None:
            video = upscaler(video, seed + b)
        yield model_to_frames(video), audio[:, 0].float().cpu().numpy(), model.config.audio_rate


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m mmdiff.sample", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", default=None, help="checkpoint (default: the shipped tiny model)")
    p.add_argument("--num", type=positive_int, default=4, help="number of clips (default: 4)")
    p.add_argument("--out", required=True, help="output folder (new or empty; see --overwrite)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the samples of an earlier run in --out (default: refuse a non-empty folder)")
    p.add_argument("--sampler", default="dpm-solver++", choices=sorted(SAMPLERS),
                   help="sampler (default: dpm-solver++); mm-diffusion-dpm-solver with --steps 20 is the released "
                        "MM-Diffusion script's DPM-Solver (docs/samplers.md)")
    p.add_argument("--steps", type=positive_int, default=20, help="sampler steps (DDPM always uses all 1000)")
    p.add_argument("--eta", type=non_negative_float, default=0.0, help="DDIM eta (default: 0)")
    p.add_argument("--order", type=int, default=3, choices=[1, 2, 3],
                   help="order of dpm-solver++ and mm-diffusion-dpm-solver (default: 3)")
    p.add_argument("--keep-audio-dc", action="store_true",
                   help="do not project audio x0 estimates onto zero mean (see mmdiff.diffusion.joint.zero_mean_audio)")
    p.add_argument("--seed", type=seed_int, default=0, help="base seed (default: 0)")
    p.add_argument("--batch-size", type=positive_int, default=8, help="clips per forward pass (default: 8)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--shift", default=None, choices=SHIFT_MODES,
                   help="RS-MMA window shift at inference: seeded (drawn per block call from the seed), public "
                        "(drawn unseeded, as the public code), zero (R = 0); default: the checkpoint's setting")
    cond = p.add_mutually_exclusive_group()
    cond.add_argument("--condition-video", help="zero-shot video->audio: generate audio for this video")
    cond.add_argument("--condition-audio", help="zero-shot audio->video: generate video for this audio (any audio or "
                                                 "video file ffmpeg reads: wav, flac, mp3, ogg, mp4, ...)")
    p.add_argument("--condition-start", type=non_negative_float, default=0.0, metavar="SECONDS",
                   help="use the condition file from this time on (default: 0); audio shorter than the clip is "
                        "padded with silence")
    p.add_argument("--guidance", default=None, choices=GUIDANCE_MODES,
                   help="conditioning on a given stream: replacement | gradient (zero-shot), or trained (a model "
                        "trained with mmdiff.train --cond-prob); default: replacement, and for --two-step trained "
                        "when the checkpoint was trained with --cond-prob, else replacement")
    p.add_argument("--scale", type=non_negative_float, default=DEFAULT_GRADIENT_SCALE,
                   help=f"gradient-guidance weight lambda (default: {DEFAULT_GRADIENT_SCALE:g})")
    p.add_argument("--prompt", default=None,
                   help="caption for a model trained with --text-cond (empty: unconditional); recorded in the manifest")
    p.add_argument("--guidance-scale", type=non_negative_float, default=GUIDANCE_SCALE,
                   help="classifier-free guidance scale for --prompt: 0 unconditional, 1 conditional without "
                        f"guidance, >1 stronger (default: {GUIDANCE_SCALE:g}, the video's; measured, README)")
    p.add_argument("--audio-guidance-scale", type=non_negative_float, default=AUDIO_GUIDANCE_SCALE,
                   help=f"the audio stream's own guidance scale (default: {AUDIO_GUIDANCE_SCALE:g}: conditional, which "
                        "keeps the audio's background as clean as without a prompt; guiding it too adds noise, README)")
    p.add_argument("--two-step", action="store_true",
                   help="Paredes et al.'s pipeline: generate the video (from --prompt), then its audio conditioned "
                        "on that video and the prompt")
    p.add_argument("--upscale", metavar="SR_CKPT", default=None, nargs="?", const=str(DEFAULT_SR_CHECKPOINT),
                   help="super-resolve the frames with this SR checkpoint (mmdiff.train_sr); alone: the shipped "
                        "tiny SR model")
    p.add_argument("--upscale-sampler", default="ddim", choices=sorted(SAMPLERS), help="SR sampler (default: ddim)")
    p.add_argument("--upscale-steps", type=positive_int, default=25, help="SR sampler steps (default: 25, as the paper)")
    p.add_argument("--upscale-noise", default="shared", choices=["shared", "independent"],
                   help="initial SR noise: one map shared by a clip's frames (default) or one per frame")
    p.add_argument("--upscale-spacing", default="linspace", choices=["linspace", "stride"],
                   help="SR DDIM levels: linspace(999, 0) (default) or 'stride', the public MM-Diffusion respacing "
                        "(0, 40, ..., 960 for 25 steps): with the defaults above, the released script's SR stage")
    args = p.parse_args(argv)
    if args.upscale_spacing == "stride" and args.upscale_sampler != "ddim":
        p.error("--upscale-spacing stride is the public code's DDIM respacing; use it with --upscale-sampler ddim")
    if args.two_step and (args.condition_video or args.condition_audio):
        p.error("--two-step generates its own video to condition on; drop --condition-video/--condition-audio")
    if args.condition_start and not (args.condition_video or args.condition_audio):
        p.error("--condition-start needs --condition-video or --condition-audio")
    return args


def prompt_embedding(prompt: str | None, model, device) -> torch.Tensor | None:
    """(1, text_dim) embedding of `prompt` for `model`, None for no or an empty prompt (unconditional).

    ValueError when the model was trained without text.
    """
    from mmdiff.text.encoder import TextEncoder

    return encode_prompt(prompt, model, lambda: TextEncoder(device=device))


def sample_batch(model, args: argparse.Namespace, count: int, seed: int, opts: SamplerOptions, schedule,
                 condition: Condition | None, text: torch.Tensor | None, mode: str | None):
    """(video, audio) of one batch: two-step, or one pass (unconditional, conditioned on a stream and/or text)."""
    if args.two_step:
        return generate_two_step(model, count, opts, seed=seed, text=text, guidance_scale=args.guidance_scale,
                                 mode=mode, schedule=schedule, condition_scale=args.scale,
                                 audio_guidance_scale=args.audio_guidance_scale)
    return generate(model, count, opts, seed=seed, condition=condition, schedule=schedule, text=text,
                    guidance_scale=args.guidance_scale, shift=args.shift, audio_guidance_scale=args.audio_guidance_scale)


def main(argv=None) -> int:
    args = parse_args(argv)
    from mmdiff.checkpoint import CheckpointError
    from mmdiff.uploads import UploadError

    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    try:
        run = setup(args, world, rank)      # model, condition, flags: checked before --out is touched
        # the folder belongs to this run (mmdiff.outdir): refused when not empty, locked while writing
        with claim_for_rank(args.out, "mmdiff.sample", rank, world, args.overwrite, ours=_sample_folder,
                            outputs=SAMPLE_OUTPUTS) as out:
            return sample(args, world, rank, out, run)
    except (OutputDirError, CheckpointError, UploadError, FileNotFoundError, ValueError) as e:
        return fail(e)        # ValueError: bad --device, an SR model of another size


# What a run writes into --out (what --overwrite may remove): sample_NNNNNN.mp4/.wav and its manifest(s).
SAMPLE_OUTPUTS = named(r"sample_\d{6,}\.(mp4|wav)", r"manifest(\.rank\d+)?\.json")


def _sample_folder(folder: Path) -> bool:
    """A folder written by an earlier mmdiff.sample (before the run marker existed)."""
    return any(folder.glob("manifest*.json"))


@dataclass
class SampleRun:
    """What `setup` loaded and checked for a run: everything `sample` needs besides the folder."""

    ckpt: Path
    model: torch.nn.Module
    schedule: object
    text: torch.Tensor | None
    condition: Condition | None
    guidance: str
    opts: SamplerOptions
    up_opts: "UpscaleOptions | None"
    upscaler: object


def setup(args: argparse.Namespace, world: int, rank: int) -> SampleRun:
    """Load the model (and SR model) and the condition, and check the flags against them; every expected error
    raises (ValueError, CheckpointError, UploadError, FileNotFoundError) before the output folder is claimed, so a
    refused run never clears an earlier run's samples (--overwrite)."""
    from mmdiff.data.av_io import check_mp4_audio_rate
    from mmdiff.device import resolve_device

    device = resolve_device(args.device)
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    ckpt = Path(args.ckpt) if args.ckpt else default_checkpoint()
    model, schedule = load_model(ckpt, device)
    cfg = model.config
    check_mp4_audio_rate(cfg.audio_rate)               # an mp4 is written per clip: fail before sampling
    try:
        text = prompt_embedding(args.prompt, model, device)
    except ValueError as e:
        raise ValueError(f"{ckpt}: {e}") from None
    condition = None
    guidance = args.guidance or "replacement"
    if args.condition_video or args.condition_audio:
        modality = "video" if args.condition_video else "audio"
        value = load_condition(args.condition_video or args.condition_audio, modality, cfg, args.condition_start)
        condition = Condition(modality, value, guidance, args.scale)
    if args.two_step:
        if set(cfg.modalities) != {"video", "audio"}:
            raise ValueError(f"{ckpt}: --two-step needs a joint audio-video model, this one has {cfg.modalities}")
        guidance = args.guidance or two_step_mode(model)
    if (condition is not None or args.two_step) and guidance == "trained" and not trained_for_conditioning(model):
        raise ValueError(f"{ckpt.name} was not trained with --cond-prob, so it has no trained conditioning: use "
                         "--guidance replacement or gradient (zero-shot), or a model trained with "
                         "python -m mmdiff.train --cond-prob 0.5")
    opts = SamplerOptions(args.sampler, steps=args.steps, eta=args.eta, order=args.order,
                          zero_mean_audio=not args.keep_audio_dc)
    up_opts = (UpscaleOptions(args.upscale, args.upscale_sampler, args.upscale_steps, args.upscale_noise,
                              spacing=args.upscale_spacing) if args.upscale else None)
    return SampleRun(ckpt, model, schedule, text, condition, guidance, opts, up_opts,
                     load_upscaler(up_opts, cfg, device))


def sample(args: argparse.Namespace, world: int, rank: int, out: Path, run: SampleRun) -> int:
    """Sample as `args` say into `out` (claimed by main) with what `setup` loaded, and write the clips and
    manifest; expected errors raise (main prints them)."""
    from mmdiff.data.av_io import write_clip, write_wav

    ckpt, model, schedule, text, condition, guidance = (run.ckpt, run.model, run.schedule, run.text, run.condition,
                                                        run.guidance)
    cfg, opts, up_opts, upscaler = model.config, run.opts, run.up_opts, run.upscaler
    plan = batch_plan(args.num, args.batch_size, rank, world)
    written = []
    with tqdm(total=sum(c for _, _, c in plan), desc=f"sample[{rank}]", disable=rank != 0) as bar:
        for b, first, count in plan:
            video, audio = sample_batch(model, args, count, args.seed + b, opts, schedule, condition, text, guidance)
            if upscaler is not None and video is not None:
                video = upscaler(video, args.seed + b)
            for k in range(count):
                name = f"sample_{first + k:06d}"
                v = video[k].cpu().numpy() if video is not None else None
                a = audio[k, 0].cpu().numpy() if audio is not None else None
                write_clip(out / f"{name}.mp4", v, a, cfg.fps, cfg.audio_rate)
                if a is not None:
                    write_wav(out / f"{name}.wav", a, cfg.audio_rate)
                written.append(name)
            bar.update(count)
    manifest = {
        "checkpoint": str(ckpt), "checkpoint_sha256": file_sha256(ckpt), "num": args.num, "seed": args.seed,
        "batch_size": args.batch_size, "sampler": args.sampler,
        "steps": schedule.num_timesteps if args.sampler == "ddpm" else args.steps, "eta": args.eta,
        "order": args.order, "clip_denoised": opts.clip_denoised, "zero_mean_audio": opts.zero_mean_audio,
        "fps": cfg.fps, "audio_rate": cfg.audio_rate, "shift": args.shift,
        "condition": None if condition is None else {
            "modality": condition.modality, "file": args.condition_video or args.condition_audio,
            "guidance": guidance, "scale": args.scale, "start": args.condition_start},
        "prompt": args.prompt, "guidance_scale": args.guidance_scale if text is not None else None,
        "audio_guidance_scale": args.audio_guidance_scale if text is not None else None,
        "two_step": None if not args.two_step else {"guidance": guidance, "scale": args.scale},
        "upscale": None if up_opts is None else {**asdict(up_opts), "sha256": file_sha256(up_opts.ckpt)},
        "samples": written,
    }
    name = "manifest.json" if world == 1 else f"manifest.rank{rank}.json"
    write_text(out / name, json.dumps(manifest, indent=2))
    print(f"wrote {len(written)} clips to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
