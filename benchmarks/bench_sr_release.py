"""The released MM-Diffusion upsampler (`mm-diffusion-sr`, 311M): fp32 forward on one 256x256 frame (batch 1)
in mmdiff, and in the public code on the same weights when a checkout of it is given, alternating in one process.

    python -m benchmarks.bench_sr_release [--public /path/to/MM-Diffusion] [--runs 2] [--threads 1] [--device cuda]

The public model is built by its own `image_sr_create_model_and_diffusion` with the released flags
(mmdiff.convert_sr.SR_RELEASES, use_fp16 off), given seeded random weights, converted with
`convert_sr_state_dict`; the largest relative difference of the two outputs is printed with the times.
Needs numpy, torch and einops for the public code; its unrelated imports (blobfile, mpi4py) are stubbed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import types

import torch

from benchmarks._util import cuda_sync, machine
from mmdiff.config import SR_MM_DIFFUSION
from mmdiff.convert_sr import SR_RELEASES, convert_sr_state_dict
from mmdiff.nn.sr_unet import SRUNet, upsample_condition


def public_model(path: str, seed: int = 0) -> torch.nn.Module:
    """The public SR U-Net with the released flags and seeded random weights (every tensor)."""
    for name in ("blobfile", "mpi4py"):                 # dist_util's imports; the SR model never uses them
        try:
            __import__(name)
        except ImportError:
            sys.modules[name] = types.ModuleType(name)
            if name == "mpi4py":
                sys.modules[name].MPI = None
    sys.path.insert(0, os.path.abspath(path))
    from mm_diffusion.script_util import image_sr_create_model_and_diffusion, image_sr_model_and_diffusion_defaults

    kwargs = image_sr_model_and_diffusion_defaults()
    kwargs.update({k: v for k, v in SR_RELEASES["landscape-sr"].items() if k in kwargs}, use_fp16=False)
    model, _ = image_sr_create_model_and_diffusion(**kwargs)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.02 if p.ndim > 1 else 0.1))
    return model.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--public", default=None, help="a checkout of researchmm/MM-Diffusion (compare with it)")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    models = {}
    if args.public:
        models["public"] = public_model(args.public)
        ours = SRUNet(SR_MM_DIFFUSION)
        ours.load_state_dict(convert_sr_state_dict(models["public"].state_dict(), SR_RELEASES["landscape-sr"])["ema"])
    else:
        ours = SRUNet(SR_MM_DIFFUSION)
    models = {"mmdiff": ours.eval(), **models}
    for m in models.values():
        m.to(dev)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 3, 256, 256, generator=g).to(dev)                         # (1, 3, 256, 256) x_t
    low = (torch.rand(1, 3, 64, 64, generator=g) * 2 - 1).to(dev)                # (1, 3, 64, 64)
    t = torch.tensor([500], device=dev)
    times = {name: [] for name in models}
    outs = {}
    with torch.no_grad():
        for _ in range(args.runs):
            for name, m in models.items():
                cuda_sync(dev)
                t0 = time.perf_counter()
                outs[name] = m(x, upsample_condition(low, 256), t) if name == "mmdiff" else m(x, t, low_res=low)
                cuda_sync(dev)
                times[name].append(round(time.perf_counter() - t0, 2))
    result = {"machine": machine(), "load_average": [round(v, 1) for v in os.getloadavg()],
              "forward_s_256px_batch1": times}
    if "public" in outs:
        ref = outs["public"]
        result["max_rel_diff"] = float((outs["mmdiff"] - ref).abs().max() / ref.abs().max())
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
