"""Train the coupled U-Net on a prepared audio-video cache.

    python -m mmdiff.train --data DATA_DIR --preset tiny --out RUN_DIR [--steps --batch-size --lr 1e-4
        --ema 0.9999 --resume --device --precision fp32|bf16]
    python -m mmdiff.train ... --text-cond [--caption-dropout 0.1 --captions FILE]   # captions (docs/text.md)
    torchrun --nproc_per_node N -m mmdiff.train ...      # DDP: NCCL on GPUs, gloo on CPU

RUN_DIR gets last.pt (checkpoint, rewritten atomically), log.csv, loss.png and previews/.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import mmdiff
from mmdiff.cliargs import non_negative_float, positive_float, positive_int
from mmdiff.config import CROSS_FUSIONS, PREDICTIONS, DiffusionConfig, ModelConfig, ablation_config, resolve_config, text_config
from mmdiff.diffusion.joint import JointLayout, model_denoiser
from mmdiff.diffusion.loss import diffusion_loss, drop_captions
from mmdiff.diffusion.schedule import Schedule
from mmdiff.training.cli import add_run_args, run, train_config
from mmdiff.training.loop import Trainer


def joint_loss_fn(layout: JointLayout, schedule: Schedule, cond_prob: float = 0.0, contrastive_weight: float = 0.0,
                  contrastive_temperature: float = 0.1, caption_dropout: float = 0.0, prediction: str = "eps",
                  min_t: int = 0):
    """Loss on a (video (B, F, 3, H, W), audio (B, 1, T)[, text (B, text_dim)]) batch: video MSE + audio MSE
    at one shared t in [min_t, T) (+ the CMMD terms when cond_prob / contrastive_weight > 0, see
    mmdiff.diffusion.loss). With text, each caption is replaced by the null caption with probability
    `caption_dropout` (CFG)."""

    def loss(model, batch, generator):
        video, audio, *rest = batch
        text = drop_captions(rest[0], caption_dropout, generator) if rest else None
        x0 = layout.pack(video if "video" in layout.slices else None, audio if "audio" in layout.slices else None)
        return diffusion_loss(model_denoiser(model, layout, text, schedule=schedule, prediction=prediction), layout,
                              schedule, x0, generator, cond_prob=cond_prob, contrastive_weight=contrastive_weight,
                              contrastive_temperature=contrastive_temperature, prediction=prediction, min_t=min_t)

    return loss


def preview_text(dataset, num: int):
    """(num, text_dim) caption embeddings of the first `num` items of a captioned dataset (None otherwise)."""
    emb = getattr(dataset, "embeddings", None)
    return None if emb is None else emb[torch.arange(num) % emb.shape[0]]


def write_previews(trainer: Trainer, step: int, num: int = 2) -> list[Path]:
    """Sample `num` clips from the EMA weights (DPM-Solver++, 20 steps) into RUN_DIR/previews/; a text model
    is given the captions of the first training items (no guidance)."""
    from mmdiff.data.av_io import write_clip
    from mmdiff.generate import SamplerOptions, generate

    cfg = trainer.model_config
    model = mmdiff.build_model(cfg).to(trainer.dist.device)
    model.load_state_dict(trainer.ema.state_dict())
    text = preview_text(trainer.dataset, num) if cfg.text_dim else None
    video, audio = generate(model, num, SamplerOptions("dpm-solver++", steps=20), seed=step,
                            schedule=Schedule(trainer.diffusion_config), text=text)
    out = []
    (trainer.run_dir / "previews").mkdir(parents=True, exist_ok=True)
    for k in range(num):
        path = trainer.run_dir / "previews" / f"step{step:07d}_{k}.mp4"
        write_clip(path, video[k].cpu().numpy() if video is not None else None,
                   audio[k, 0].cpu().numpy() if audio is not None else None, cfg.fps, cfg.audio_rate)
        out.append(path)
    return out


# --- ablation and CMMD flags (branch cmmd): model variants and extra loss terms -------------------------
def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,4,8, got {text!r}") from None


def add_variant_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("ablations and CMMD (docs/ablations.md)")
    g.add_argument("--cross-windows", type=_int_list, default=None,
                   help="RS-MMA window per attention scale, e.g. 1,4,8 (paper Table 3: 1,1,1 | 4,4,4 | 8,8,8 | "
                        "1,4,8); one per scale of the preset (default: the preset's)")
    g.add_argument("--modalities", default=None, choices=("video,audio", "video", "audio"),
                   help="streams to train: video,audio (joint), or video / audio alone (paper Ours-v / Ours-a)")
    g.add_argument("--cross-fusion", default=None, choices=CROSS_FUSIONS,
                   help="cross-modal layer: rsmma (MM-Diffusion) or easy (CMMD easy fusion); default: the preset's")
    g.add_argument("--prediction", default=None, choices=PREDICTIONS,
                   help="what the network predicts: eps (the paper's) or v (Salimans & Ho 2022: its data "
                        "prediction stays accurate at high noise, which deterministic samplers need; "
                        "BENCHMARKS.md, 'Why deterministic samplers fail'); default: the preset's (eps)")
    g.add_argument("--contrastive-weight", type=non_negative_float, default=0.0,
                   help="weight of the CMMD contrastive term, 0 = off (default: 0); doubles the model batch")
    g.add_argument("--contrastive-temperature", type=positive_float, default=0.1,
                   help="temperature of the contrastive term's log-error logits (default: 0.1)")
    g.add_argument("--cond-prob", type=float, default=0.0,
                   help="probability that a clip gets its clean video or audio as a condition (loss masked), "
                        "for sampling with --guidance trained (default: 0)")


def add_text_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("text conditioning (docs/text.md)")
    g.add_argument("--text-cond", action="store_true",
                   help="condition the model on captions (frozen all-MiniLM-L6-v2 embeddings, FiLM); captions come "
                        "from --captions or the cache items' meta (the synthetic data has them)")
    g.add_argument("--caption-dropout", type=float, default=0.1,
                   help="probability of training a clip with the null caption, for classifier-free guidance "
                        "(default: 0.1)")
    g.add_argument("--captions", default=None, metavar="FILE",
                   help="captions sidecar: CSV with columns item and/or source, caption; or JSON lines with the "
                        "same keys; matched by cache item id or source path (overrides the items' meta)")
    g.add_argument("--allow-missing-captions", action="store_true",
                   help="train items without a caption with the null caption instead of stopping with an error")
    g.add_argument("--caption-branch-only", action="store_true",
                   help="train only the caption branch (the text MLP); every other weight stays as --init-from "
                        "gave it, so the model's output with no caption changes only through the null caption's "
                        "embedding: teaches prompts to a trained model (README, 'The shipped default model')")
    g.add_argument("--min-t", type=int, default=0,
                   help="train on noise levels t in [N, 1000) only (default 0: all); a caption tells most at high "
                        "noise, where x_t no longer shows the colour or the sound")


def check_text_args(args: argparse.Namespace) -> None:
    dropout = getattr(args, "caption_dropout", 0.0)
    if not 0.0 <= dropout <= 1.0:
        raise ValueError(f"--caption-dropout must be in [0, 1], got {dropout}")
    if not getattr(args, "text_cond", False) and (getattr(args, "captions", None)
                                                  or getattr(args, "allow_missing_captions", False)
                                                  or getattr(args, "caption_branch_only", False)):
        raise ValueError("--captions, --allow-missing-captions and --caption-branch-only need --text-cond")
    if not 0 <= getattr(args, "min_t", 0) < DiffusionConfig().num_timesteps:
        raise ValueError(f"--min-t must be in [0, {DiffusionConfig().num_timesteps}), got {args.min_t}")


def variant_config(args: argparse.Namespace, cfg: ModelConfig) -> ModelConfig:
    """The preset's config with the ablation and text flags applied; ValueError on settings that do not fit."""
    cfg = ablation_config(cfg, windows=args.cross_windows, cross_fusion=args.cross_fusion, prediction=args.prediction,
                          modalities=tuple(args.modalities.split(",")) if args.modalities else None)
    check_text_args(args)
    if getattr(args, "text_cond", False):
        cfg = text_config(cfg)
    if not 0.0 <= args.cond_prob <= 1.0:
        raise ValueError(f"--cond-prob must be in [0, 1], got {args.cond_prob}")
    if args.contrastive_weight < 0 or args.contrastive_temperature <= 0:
        raise ValueError("--contrastive-weight must be >= 0 and --contrastive-temperature > 0")
    if len(cfg.modalities) < 2 and (args.cond_prob > 0 or args.contrastive_weight > 0):
        raise ValueError("--cond-prob and --contrastive-weight need both modalities")
    if args.contrastive_weight > 0 and args.batch_size < 2:
        raise ValueError("--contrastive-weight needs --batch-size >= 2 (the other clips are the negatives)")
    return cfg


def variant_loss_args(args: argparse.Namespace) -> dict:
    extra = {"caption_dropout": args.caption_dropout} if getattr(args, "text_cond", False) else {}  # text runs only
    if getattr(args, "min_t", 0):
        extra["min_t"] = args.min_t
    return {"cond_prob": args.cond_prob, "contrastive_weight": args.contrastive_weight,
            "contrastive_temperature": args.contrastive_temperature, **extra}
# --- end of ablation and CMMD flags ----------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m mmdiff.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_args(p, preset_help="model preset: tiny | paper, or a paper ablation (paper-w111, paper-w444, "
                                "paper-w888, paper-no-rs, paper-v, paper-a, paper-easy; docs/ablations.md)")
    p.add_argument("--no-random-shift", action="store_true", help="train RS-MMA without the random shift (Table 4)")
    p.add_argument("--clips-per-item", type=positive_int, default=4, help="random clips drawn per cached item per epoch")
    add_variant_args(p)
    add_text_args(p)
    args = p.parse_args(argv)
    try:
        variant_config(args, resolve_config(args.preset))
    except ValueError as e:
        p.error(str(e))
    return args


def model_config(args: argparse.Namespace):
    """The preset with the flags' changes."""
    changes = {}
    if args.dropout is not None:
        changes["dropout"] = args.dropout
    if args.no_random_shift:
        changes["random_shift"] = False
    cfg = resolve_config(args.preset)
    return cfg.replace(**changes) if changes else cfg


def captioned(dataset, args: argparse.Namespace, device):
    """The dataset with each item's caption embedded once by the frozen encoder (mmdiff.text.captions)."""
    from mmdiff.text.captions import CaptionedClips
    from mmdiff.text.encoder import TextEncoder

    return CaptionedClips.build(dataset, TextEncoder(device=device), args.captions, args.allow_missing_captions)


def main(argv=None) -> int:
    args = parse_args(argv)

    def make_trainer(info):
        from mmdiff.data.dataset import AVClipDataset

        cfg, dcfg = variant_config(args, model_config(args)), DiffusionConfig()
        dataset = AVClipDataset(args.data, model_config=cfg, seed=args.seed, clips_per_item=args.clips_per_item)
        text_args = {}
        if cfg.text_dim:
            dataset = captioned(dataset, args, info.device)
            text_args = {"text_cond": True, "captions": str(args.captions) if args.captions else None}
        trainer = Trainer(args.out, mmdiff.build_model(cfg), cfg, dcfg, dataset,
                          joint_loss_fn(JointLayout.from_config(cfg), Schedule(dcfg), prediction=cfg.prediction,
                                        **variant_loss_args(args)),
                          train_config(args), info, resume=args.resume,
                          preview_fn=write_previews if args.preview_every else None,
                          train_args={"data": str(args.data), "preset": args.preset, **variant_loss_args(args),
                                      **text_args})
        return trainer, args.preset

    def data_spec():
        from mmdiff.data.cache import CacheSpec

        return CacheSpec.from_model_config(model_config(args))

    return run(args, make_trainer, data_spec)


if __name__ == "__main__":
    sys.exit(main())
