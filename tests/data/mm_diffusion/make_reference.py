"""Make the MM-Diffusion equivalence references in this folder by running the PUBLIC code.

    python tests/data/mm_diffusion/make_reference.py --public-repo PATH/TO/MM-Diffusion

Run it in a scratch environment that has the public repository (researchmm/MM-Diffusion, commit
UPSTREAM_COMMIT) and `torch numpy einops`; blobfile and mpi4py, imported by modules the model does not
use, are stubbed when absent. Nothing of the public code is copied into mmdiff: this script imports it.

Writes:
- reduced_args.json: the public model arguments of a reduced MultimodalUNet that keeps every module type
  (2D+1D convs, dilated audio convs, spatial/temporal/audio self-attention, RS-MMA with windows 1,4,8 and
  the middle block's full window, resampling res blocks, skip convs, the Conv3d video head);
- reduced_weights.npz: seeded random weights in the public layout (`keys`, and per key i an int8 array
  `q{i}` with value = offsets[i] + q * scales[i], exact in fp32; every layer, including those the public
  code zero-initialises, is random so that every path reaches the outputs);
- reduced_io.npz: inputs (two clips, two timesteps), the public outputs with R = 0 and with the shifts the
  public code drew (recorded from its `random.randint` calls, in call order);
- released_layout.json: the full released model's key -> shape, its parameter count and the audio
  dilation of every block (read from the public modules).
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import types
from pathlib import Path

import numpy as np
import torch

UPSTREAM_COMMIT = "7250222114ee1eca36e32d90e8a41f12d92651e2"
HERE = Path(__file__).resolve().parent

RELEASED_ARGS = dict(   # ssh_scripts/multimodal_sample_sr.sh MODEL_FLAGS over model_defaults()
    video_size=[16, 3, 64, 64], audio_size=[1, 25600], num_channels=128, num_res_blocks=2, channel_mult="",
    learn_sigma=False, class_cond=False, use_checkpoint=False, cross_attention_resolutions="2,4,8",
    video_attention_resolutions="2,4,8", audio_attention_resolutions="-1", cross_attention_windows="1,4,8",
    cross_attention_shift=True, num_heads=4, num_head_channels=64, num_heads_upsample=-1,
    use_scale_shift_norm=True, dropout=0.1, use_fp16=True, resblock_updown=True)
REDUCED_ARGS = dict(RELEASED_ARGS, video_size=[16, 3, 16, 16], audio_size=[1, 2048], num_channels=32,
                    num_res_blocks=1, channel_mult="1,1,1,1", num_head_channels=16, dropout=0.0, use_fp16=False)


def import_public(repo: Path):
    for name in ("blobfile", "mpi4py"):        # imported by dist_util, unused by the model
        try:
            __import__(name)
        except ImportError:
            stub = types.ModuleType(name)
            stub.MPI = None
            sys.modules[name] = stub
    sys.path.insert(0, str(repo))
    from mm_diffusion import multimodal_unet
    from mm_diffusion.multimodal_script_util import create_model
    return create_model, multimodal_unet


def random_weights(model: torch.nn.Module, seed: int) -> dict[str, tuple[torch.Tensor, float, float]]:
    """Seeded values for every tensor as (int8 q, scale, offset): value = offset + q * scale, exact in fp32
    (scale a power of two), stored in a quarter of the fp32 size."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, p in model.state_dict().items():
        q = (torch.randn(p.shape, generator=gen) * 32).round().clamp(-127, 127).to(torch.int8)  # std ~32
        if key.endswith("GroupNorm.weight"):
            scale, offset = 2.0 ** -7, 1.0                     # 1 + 0.25 * N(0, 1)
        elif key.endswith("bias"):
            scale, offset = 2.0 ** -7, 0.0                     # 0.25 * N(0, 1)
        else:                                                  # N(0, 1) / sqrt(fan-in), to a power of two
            scale, offset = 2.0 ** -(5 + round(np.log2(p[0].numel()) / 2)), 0.0
            if "qkv" in key:   # half as large: fp32 rounding (~1e-7) grows to ~7e-5 through sharp random
                scale /= 2     # attention at full scale; at half it stays ~1e-6, so 1e-5 tests the design
        out[key] = (q, scale, offset)
    return out


def dequantise(q: torch.Tensor, scale: float, offset: float) -> torch.Tensor:
    return offset + q.float() * scale


class RecordedRandom:
    """Stands in for the `random` module inside multimodal_unet: R = 0, or draws that are recorded."""

    def __init__(self, zero: bool, seed: int = 0):
        self.zero, self.rng, self.draws = zero, random.Random(seed), []

    def randint(self, a: int, b: int) -> int:
        r = a if self.zero else self.rng.randint(a, b)
        self.draws.append(r)
        return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--public-repo", required=True, type=Path, help="checkout of researchmm/MM-Diffusion")
    ap.add_argument("--out", type=Path, default=HERE, help="output folder (default: this folder)")
    args = ap.parse_args()
    create_model, unet_module = import_public(args.public_repo)
    torch.set_num_threads(1)

    # the full released layout, on the meta device (no memory)
    with torch.device("meta"):
        released = create_model(**RELEASED_ARGS)
    dilations = {name: m.dilation[0] for name, m in released.named_modules()
                 if name.endswith("audio_in_layers.2.audio_conv")}
    layout = {"upstream_commit": UPSTREAM_COMMIT, "args": RELEASED_ARGS,
              "parameters": sum(p.numel() for p in released.parameters()),
              "audio_dilations": dilations,
              "state_dict": {k: list(v.shape) for k, v in released.state_dict().items()}}
    (args.out / "released_layout.json").write_text(json.dumps(layout, indent=0) + "\n")

    model = create_model(**REDUCED_ARGS).eval()
    weights = random_weights(model, seed=17)
    model.load_state_dict({k: dequantise(*v) for k, v in weights.items()}, strict=True)
    gen = torch.Generator().manual_seed(1)
    video = torch.randn(2, *REDUCED_ARGS["video_size"], generator=gen)
    audio = torch.randn(2, *REDUCED_ARGS["audio_size"], generator=gen)
    t = torch.tensor([37, 812])
    results = {}
    for name, zero in (("zero", True), ("recorded", False)):
        rec = RecordedRandom(zero, seed=5)
        unet_module.random = rec
        with torch.no_grad():
            ev, ea = model(video, audio, t)
        results[name] = (ev.numpy(), ea.numpy(), np.array(rec.draws, dtype=np.int64))
        print(name, "shifts", rec.draws, "|video|", float(ev.abs().max()), "|audio|", float(ea.abs().max()))
    unet_module.random = random
    keys = list(weights)
    np.savez_compressed(args.out / "reduced_weights.npz", keys=np.array(keys),
             scales=np.array([weights[k][1] for k in keys]), offsets=np.array([weights[k][2] for k in keys]),
             **{f"q{i}": weights[k][0].numpy() for i, k in enumerate(keys)})
    np.savez(args.out / "reduced_io.npz", video=video.numpy(), audio=audio.numpy(), t=t.numpy(),
             video_out_zero=results["zero"][0], audio_out_zero=results["zero"][1],
             video_out_recorded=results["recorded"][0], audio_out_recorded=results["recorded"][1],
             shifts_recorded=results["recorded"][2], shifts_zero=results["zero"][2])
    reduced = {k: v for k, v in REDUCED_ARGS.items()}
    reduced["video_size"] = ",".join(map(str, reduced["video_size"]))
    reduced["audio_size"] = ",".join(map(str, reduced["audio_size"]))
    (args.out / "reduced_args.json").write_text(json.dumps(reduced, indent=1) + "\n")
    print("parameters: released", layout["parameters"], "reduced", sum(p.numel() for p in model.parameters()))


if __name__ == "__main__":
    main()
