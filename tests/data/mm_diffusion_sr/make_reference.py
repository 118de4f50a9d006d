"""Reference outputs of MM-Diffusion's PUBLIC super-resolution code, for tests/test_sr_release.py.

Runs researchmm/MM-Diffusion unchanged (only the unrelated imports blobfile / mpi4py of its dist_util are
stubbed when missing) on seeded random weights in its own layout, at a reduced configuration that keeps
every block type of the released upsampler (down/up-sampling residual blocks with resblock_updown, channel-
changing skip convs, attention at two scales with 4 heads, the middle block, the learned-sigma head,
scale-shift norm), with every zero-initialised layer randomised too. Writes into this folder:

- reduced.npz: the inputs (x_t, low_res, t), the network output, and a DDIM-25 run (the released script's SR
  stage: sr_timestep_respacing ddim25, clip_denoised, eta 0, one noise map per clip shared by its frames):
  its state after step 12 and its sample;
- reduced.json: the public arguments, the reduced model's layout (key -> shape), the seeds, the sha256 of
  the weights, the upstream commit, the torch version. The weights (4.5M) are not stored: `random_weights`
  below makes them from the layout and the seed (float16 values; the public model ran on their fp32
  copies), and the tests call it and check the sha256 before using them;
- layout.json: key -> shape of the full released SR model (ssh_scripts/multimodal_sample_sr.sh's flags).

    git clone https://github.com/researchmm/MM-Diffusion /tmp/MM-Diffusion    # commit below
    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install torch numpy einops
    /tmp/venv/bin/python tests/data/mm_diffusion_sr/make_reference.py --public /tmp/MM-Diffusion

tests/test_sr_release.py imports `random_weights` and `weights_sha256` from this file; nothing else here runs
without --public.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import torch

UPSTREAM_COMMIT = "7250222114ee1eca36e32d90e8a41f12d92651e2"   # the commit these files were made from
HERE = Path(__file__).resolve().parent

# The released SR flags (ssh_scripts/multimodal_sample_sr.sh, SRMODEL_FLAGS and SR_DIFFUSION_FLAGS).
RELEASED = dict(sr_attention_resolutions="8,16,32", large_size=256, small_size=64, sr_learn_sigma=True,
                sr_num_channels=192, sr_num_heads=4, sr_num_res_blocks=2, sr_resblock_updown=True, use_fp16=True,
                sr_use_scale_shift_norm=True, sr_diffusion_steps=1000, sr_timestep_respacing="ddim25")
# Reduced: 16 -> 64 pixels, widths 32/64/96/128 (large_size 64 gives channel_mult 1,2,3,4), one block per scale,
# attention at ds 4 and 8 (96 and 128 channels, 4 heads of 24 and 32) and in the middle block.
REDUCED = {**RELEASED, "large_size": 64, "small_size": 16, "sr_num_channels": 32, "sr_num_res_blocks": 1,
           "sr_attention_resolutions": "4,8", "use_fp16": False}
WEIGHT_SEED, INPUT_SEED, NOISE_SEED = 1234, 5678, 91011
CLIPS, FRAMES = 2, 2


def stub_unrelated_imports() -> None:
    """dist_util imports blobfile and mpi4py at module level; the SR model and diffusion never use them."""
    for name in ("blobfile", "mpi4py"):
        try:
            __import__(name)
        except ImportError:
            mod = types.ModuleType(name)
            if name == "mpi4py":
                mod.MPI = types.SimpleNamespace(COMM_WORLD=types.SimpleNamespace(Get_rank=lambda: 0,
                                                                                 Get_size=lambda: 1))
            sys.modules[name] = mod


def build(args: dict):
    from mm_diffusion.script_util import image_sr_create_model_and_diffusion, image_sr_model_and_diffusion_defaults

    kwargs = image_sr_model_and_diffusion_defaults()
    kwargs.update(args)
    return image_sr_create_model_and_diffusion(**kwargs), kwargs


def random_weights(layout: dict[str, list[int]], seed: int) -> dict[str, torch.Tensor]:
    """Seeded float16 weights for a public key -> shape layout, drawn in its key order, nothing left at zero:
    norm scales 1 + 0.2 N(0, 1), norm shifts and biases 0.1 N(0, 1), other weights N(0, 1 / fan_in)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in layout.items():
        is_norm = any(part in key for part in ("norm", "in_layers.0.", "out_layers.0.")) or key.startswith("out.0.")
        if len(shape) == 1 and is_norm:
            v = (1.0 if key.endswith("weight") else 0.0) + 0.2 * torch.randn(shape, generator=g)
        elif len(shape) == 1:
            v = 0.1 * torch.randn(shape, generator=g)
        else:
            v = torch.randn(shape, generator=g) / float(np.prod(shape[1:])) ** 0.5
        out[key] = v.half()
    return out


def weights_sha256(weights: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for key, v in weights.items():
        h.update(key.encode())
        h.update(v.numpy().tobytes())
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--public", required=True, help="a checkout of researchmm/MM-Diffusion")
    ap.add_argument("--commit", default=None, help="its commit, when --public is not a git checkout")
    ap.add_argument("--out", default=str(HERE))
    a = ap.parse_args()
    commit = a.commit or subprocess.run(["git", "-C", a.public, "rev-parse", "HEAD"], capture_output=True,
                                        text=True, check=True).stdout.strip()
    if commit != UPSTREAM_COMMIT:
        print(f"note: public code at {commit}, the stored files were made at {UPSTREAM_COMMIT}")
    sys.path.insert(0, str(Path(a.public).resolve()))
    stub_unrelated_imports()
    torch.set_num_threads(1)
    out = Path(a.out)

    with torch.device("meta"):
        (full, _), _ = build(RELEASED)
    layout = {k: list(v.shape) for k, v in full.state_dict().items()}
    (out / "layout.json").write_text(json.dumps(layout, indent=0) + "\n")

    (model, diffusion), kwargs = build(REDUCED)
    model.eval()
    reduced_layout = {k: list(v.shape) for k, v in model.state_dict().items()}
    weights = random_weights(reduced_layout, WEIGHT_SEED)
    model.load_state_dict({k: v.float() for k, v in weights.items()}, strict=True)
    g = torch.Generator().manual_seed(INPUT_SEED)
    size, low = REDUCED["large_size"], REDUCED["small_size"]
    x_t = torch.randn(2, 3, size, size, generator=g)                              # (N, 3, H, W)
    low_res = torch.rand(2, 3, low, low, generator=g) * 2 - 1                     # (N, 3, h, w) in [-1, 1]
    t = torch.tensor([5, 700])
    with torch.no_grad():
        output = model(x_t, t, low_res=low_res)                                    # (N, 6, H, W)

    # The released script's SR stage: one noise map per clip, repeated over its frames
    # ("noise = repeat(noise, 'b c h w -> (b repeat) c h w', repeat=f)"), DDIM over the ddim25 respacing.
    gn = torch.Generator().manual_seed(NOISE_SEED)
    noise = torch.randn(CLIPS, 3, size, size, generator=gn)                       # (B, 3, H, W)
    noise = noise.repeat_interleave(FRAMES, dim=0)                                # (B*F, 3, H, W)
    clip_low = torch.rand(CLIPS * FRAMES, 3, low, low, generator=g) * 2 - 1        # (B*F, 3, h, w)
    states = [step["sample"] for step in diffusion.ddim_sample_loop_progressive(
        model, (CLIPS * FRAMES, 3, size, size), noise=noise, clip_denoised=True,
        model_kwargs={"low_res": clip_low}, eta=0.0)]                               # 25 x (B*F, 3, H, W)

    np.savez_compressed(out / "reduced.npz", x_t=x_t.numpy(), low_res=low_res.numpy(), t=t.numpy(),
                        output=output.numpy(), ddim_low_res=clip_low.numpy(), ddim_step12=states[11].numpy(),
                        ddim_sample=states[-1].numpy())
    meta = {"upstream": "researchmm/MM-Diffusion", "commit": commit, "torch": torch.__version__,
            "args": REDUCED, "released_args": RELEASED, "public_kwargs": kwargs,
            "seeds": {"weights": WEIGHT_SEED, "inputs": INPUT_SEED, "noise": NOISE_SEED},
            "weights_sha256": weights_sha256(weights), "layout": reduced_layout,
            "ddim": {"clips": CLIPS, "frames": FRAMES, "steps": len(states), "timesteps": diffusion.timestep_map,
                     "noise": "torch.randn((clips, 3, H, W), generator=torch.Generator().manual_seed(noise)), "
                              "each map repeated over its clip's frames"}}
    (out / "reduced.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(f"{sum(v.numel() for v in weights.values())} weights, output std {output.std():.3f}, DDIM sample "
          f"saturated {(states[-1].abs() > 0.999).float().mean():.3f}")


if __name__ == "__main__":
    main()
