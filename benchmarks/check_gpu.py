"""GPU correctness: the shipped models compute the same function on CUDA as on the CPU.

    python -m benchmarks.check_gpu            # needs a CUDA device; prints one JSON line per model

For the default joint model and the default SR model: one forward pass on the same random inputs on the CPU
(float32 reference: the timestep embedding is built in float32, so the models do not run in float64) and on CUDA (fp32, and bf16 autocast), reported as ||out - ref|| / ||ref||. Float32 on
CUDA lands near 1e-3 at most (cuDNN convolutions use TF32 by default), bf16 between 1e-3 and 1e-2.
Exits non-zero when fp32 is over 1e-2 or bf16 over 5e-2, or when an output is not finite.
"""
from __future__ import annotations

import copy
import json
import sys

import torch


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    out = out.double().cpu()
    if not torch.isfinite(out).all():
        return float("inf")
    return float((out - ref).norm() / ref.norm())


def compare(name: str, model: torch.nn.Module, inputs: tuple[torch.Tensor, ...], pick) -> dict:
    """`pick(model(*inputs))` on CPU float32 vs CUDA fp32 / bf16 autocast. The global CPU generator is
    reseeded before each forward so that RS-MMA's inference shifts (drawn on the CPU) are the same."""
    ref_model = copy.deepcopy(model).float().eval()
    torch.manual_seed(0)
    with torch.no_grad():
        ref = pick(ref_model(*inputs)).double()
    gpu = model.float().cuda().eval()
    row = {"model": name}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = pick(gpu(*[x.cuda() for x in inputs]))
        row[f"rel_err_{precision}"] = rel_err(out, ref)
    return row


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 2
    from mmdiff.checkpoint import DEFAULT_CHECKPOINT, DEFAULT_SR_CHECKPOINT, load_model, load_sr_model

    g = torch.Generator().manual_seed(0)
    joint, _ = load_model(DEFAULT_CHECKPOINT)
    cfg = joint.config
    v = torch.randn(2, *cfg.video_shape, generator=g)                   # (2, F, 3, H, W)
    a = torch.randn(2, *cfg.audio_shape, generator=g)                   # (2, 1, T)
    t = torch.tensor([10, 700])
    rows = [compare("joint (default)", joint, (v, a, t), lambda out: torch.cat([out[0].flatten(), out[1].flatten()]))]
    sr, _ = load_sr_model(DEFAULT_SR_CHECKPOINT)
    x = torch.randn(2, 3, sr.config.high_size, sr.config.high_size, generator=g)          # (2, 3, H, W)
    low = torch.randn(2, 3, sr.config.high_size, sr.config.high_size, generator=g)
    rows.append(compare("SR (default)", sr, (x, low, t), lambda out: out.flatten()))
    ok = True
    for row in rows:
        ok &= row["rel_err_fp32"] < 1e-2 and row["rel_err_bf16"] < 5e-2
        print(json.dumps(row))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
