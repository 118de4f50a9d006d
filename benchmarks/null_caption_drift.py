"""How far a model's unconditional predictions moved from a base model's: the relative difference of the two
models' noise predictions per stream, on the same held-out synthetic clips noised to the same levels.

    python -m benchmarks.null_caption_drift --ckpt mmdiff/assets/tiny-synthetic.pt --base STAGE4.pt \
        [--clips 8 --levels 10 100 300 600 900 --seed 99]

Made for a `mmdiff.train --caption-branch-only` run against its `--init-from` source: every weight outside the
caption branch stays bit for bit, but the branch's output for the null caption (its biases) still moves, so
the unconditional model can drift a little. Both models are called without a caption (a text model then
uses its null caption), with their EMA weights and RS-MMA's shift R = 0. Prints one JSON line per level: {"t", "video", "audio"}, each
||eps - eps_base|| / ||eps_base|| over the clips, and "video_x0", "audio_x0", the same for the data
predictions (eps is ill-determined at low noise, where small differences of x0 look large in eps).
"""
from __future__ import annotations

import argparse
import json

import torch


def drift(models, video: torch.Tensor, audio: torch.Tensor, levels, seed: int = 0) -> list[dict]:
    """[{"t", stream: relative difference, stream_x0: same of x0}] of the eps of `models` = ((model, schedule), (base, base schedule))
    on clean clips video (N, F, 3, H, W), audio (N, 1, T), noised to each of `levels` with the same noise."""
    from mmdiff.diffusion.joint import JointLayout, model_denoiser

    (model, schedule), (base, base_schedule) = models
    layout = JointLayout.from_config(model.config)
    if JointLayout.from_config(base.config).slices != layout.slices:
        raise ValueError("the two checkpoints make clips of different shapes; compare a model with its own base")
    x0 = layout.pack(video, audio)                                                     # (N, D)
    ours = model_denoiser(model, layout, schedule=schedule, shift=0)        # RS-MMA's R = 0: no draw differs
    theirs = model_denoiser(base, layout, schedule=base_schedule, shift=0)
    g = torch.Generator().manual_seed(seed)
    rows = []
    for level in levels:
        t = torch.full((x0.shape[0],), int(level))                                     # (N,)
        xt = schedule.q_sample(x0, t, torch.randn(x0.shape, generator=g))              # (N, D)
        with torch.inference_mode():
            eps, ref = ours(xt, t), theirs(xt, t)
        x0_hat, x0_ref = schedule.predict_x0(xt, t, eps), schedule.predict_x0(xt, t, ref)          # (N, D)
        row = {"t": int(level)}
        for m, s in layout.slices.items():
            row[m] = _relative(eps[:, s], ref[:, s])
            row[f"{m}_x0"] = _relative(x0_hat[:, s], x0_ref[:, s])
        rows.append(row)
    return rows


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| to 3 significant digits (a tiny drift stays visible, exact equality stays 0)."""
    return float(f"{float((a - b).norm() / b.norm()):.3g}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True, help="the model (e.g. a --caption-branch-only run's export)")
    ap.add_argument("--base", required=True, help="the model it started from (its --init-from)")
    ap.add_argument("--clips", type=int, default=8, help="held-out synthetic clips (default: 8)")
    ap.add_argument("--levels", type=int, nargs="+", default=[10, 100, 300, 600, 900], help="noise levels t")
    ap.add_argument("--seed", type=int, default=99, help="seed of the clips and the noise (default: 99)")
    args = ap.parse_args(argv)
    from benchmarks.bench_frame_errors import clips
    from mmdiff.checkpoint import load_model

    models = load_model(args.ckpt), load_model(args.base)
    for m, _ in models:
        m.eval()
    video, audio = clips(models[0][0].config, args.clips, args.seed)              # held-out synthetic clips
    for row in drift(models, video, audio, args.levels, args.seed):
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
