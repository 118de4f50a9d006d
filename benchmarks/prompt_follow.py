"""Does a text model follow its prompts? Issue 20's prompt check on captions of held-out synthetic clips.

    python -m benchmarks.prompt_follow --ckpt RUN/last.pt [--prompts 16] [--per-prompt 2] \
        [--guidance 0 1 3] [--audio-guidance 1] [--setting dpm-solver++:20] [--seed 0]

The prompts are the captions of the first `--prompts` clips of the held-out dataset seed (99): each names a
class (colour/shape, which also fixes the pitch) and an event count. Every prompt is sampled `--per-prompt`
times at each guidance scale (0 = unconditional, the chance level of this check; 1 = conditional), and
`eval.prompt_follow` reads the class and count back from the samples. One JSON line per scale: the fractions
of samples whose colour/shape, pitch, event count and all three match their prompt, and how many samples fail
the clean-sample check (eval.cleanliness, thresholds from 256 real clips: strong guidance can over-saturate).
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from benchmarks._util import machine


def prompts(num: int, seed: int, cfg) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Captions, class indices and event counts of the first `num` clips of the synthetic dataset `seed`."""
    from mmdiff.data.synthetic import make_clip

    clips = [make_clip(i, seed, cfg.video_frames, cfg.fps, cfg.video_size, cfg.audio_rate) for i in range(num)]
    return ([c.record["caption"] for c in clips], np.array([c.spec.cls for c in clips]),
            np.array([len(c.spec.events) for c in clips]))


def follow(model, captions: list[str], per_prompt: int, guidance: float, opts, seed: int,
           audio_guidance: float | None = None):
    """Sample every caption `per_prompt` times; returns (eval.prompt_follow.Recognised, eval.cleanliness.Scores)
    over all samples."""
    from eval.cleanliness import Scores, from_generated, score_clips
    from eval.prompt_follow import Recognised, recognise
    from mmdiff.generate import generate
    from mmdiff.text.encoder import TextEncoder

    text = TextEncoder().encode(captions)                                            # (P, text_dim)
    found, scores = [], []
    for i in range(len(captions)):
        video, audio = generate(model, num=per_prompt, options=opts, seed=seed + i, text=text[i:i + 1],
                                guidance_scale=guidance, audio_guidance_scale=audio_guidance)
        clips = from_generated(video, audio)
        found.append(recognise(*clips, model.config.audio_rate))
        scores.append(score_clips(*clips, model.config.audio_rate))
    return (Recognised(*(np.concatenate([getattr(f, k) for f in found]) for k in ("video_class", "audio_class",
                                                                                   "events"))),
            Scores(*(np.concatenate([getattr(s, k) for s in scores]) for k in Scores.__dataclass_fields__)))


def main(argv=None) -> int:
    from benchmarks.clean_samples import parse_setting, real_scores
    from eval.cleanliness import Criterion
    from eval.prompt_follow import agreement
    from mmdiff.checkpoint import load_model

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", required=True, help="a checkpoint trained with --text-cond")
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--per-prompt", type=int, default=2)
    p.add_argument("--guidance", type=float, nargs="+", default=[0.0, 1.0, 3.0])
    p.add_argument("--audio-guidance", type=float, default=None,
                   help="the audio stream's own guidance scale (default: each --guidance scale)")
    p.add_argument("--setting", default="dpm-solver++:20", help="SAMPLER:STEPS[:ETA]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-seed", type=int, default=99, help="synthetic dataset seed of the prompts (held out)")
    args = p.parse_args(argv)
    model, _ = load_model(args.ckpt)
    if not model.config.text_dim:
        raise SystemExit(f"error: {args.ckpt} was trained without captions (--text-cond); it takes no prompt")
    captions, classes, events = prompts(args.prompts, args.data_seed, model.config)
    print(f"# {machine()}")
    opts = parse_setting(args.setting, zero_mean=True, clip=True)
    criterion = Criterion.from_real(real_scores(256, args.data_seed, model.config))
    for scale in args.guidance:
        found, scores = follow(model, captions, args.per_prompt, scale, opts, args.seed, args.audio_guidance)
        got = agreement(found, np.repeat(classes, args.per_prompt), np.repeat(events, args.per_prompt))
        print(json.dumps({"ckpt": args.ckpt, "setting": args.setting, "guidance": scale,
                          "audio_guidance": scale if args.audio_guidance is None else args.audio_guidance,
                          "samples": len(captions) * args.per_prompt} | {k: round(v, 3) for k, v in got.items()}
                         | {"dirty": int((~criterion.clean(scores)).sum())}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
